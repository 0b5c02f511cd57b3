"""Views that change an article in an audited transaction."""

from django.http import HttpResponse
from django.views.decorators.http import require_POST

from pgtrail_context.django import audited_atomic
from shop.models import Article


@require_POST
def publish(request, pk):
    with audited_atomic(reason=request.POST.get("reason") or None):
        Article.objects.filter(pk=pk).update(status="published")
    return HttpResponse(status=204)


@require_POST
@audited_atomic(reason="breaking")
def break_it(request, pk):
    Article.objects.filter(pk=pk).update(status="broken")
    raise ValueError("the view fails after its change")


@require_POST
def archive(request, pk):
    # Relies on PGTRAIL_ATOMIC_REQUESTS: the middleware runs this view in audited_atomic().
    Article.objects.filter(pk=pk).update(status="archived")
    if request.POST.get("fail"):
        raise ValueError("archive failed")
    return HttpResponse(status=204)
