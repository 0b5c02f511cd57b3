"""The test project's URLs."""

from django.urls import path

from shop import views

urlpatterns = [
    path("articles/<int:pk>/publish", views.publish),
    path("articles/<int:pk>/break", views.break_it),
    path("articles/<int:pk>/archive", views.archive),
]
