"""A Django app: pgtrail shipped as a migration (RunSQL of the file
`pgtrail sql` prints) applied all or nothing by `manage.py migrate`, and
views whose changes carry the logged-in user, the request id and a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HERE, drop_database, new_database, pgtrail

CONFIG = '[capture]\ninclude = ["shop_*"]\n'

PGTRAIL_MIGRATION = '''from pathlib import Path

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [
        # The file `pgtrail sql` printed: no BEGIN/COMMIT, it runs in this migration's transaction.
        migrations.RunSQL(Path(__file__).with_name("0002_pgtrail.sql").read_text(), migrations.RunSQL.noop),
        migrations.RunSQL("UPDATE shop_article SET status = {backfill} WHERE status = ''"),
    ]
'''

REVIEW_MIGRATION = '''from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_pgtrail")]
    operations = [
        migrations.RunSQL("ALTER TABLE shop_article ADD COLUMN reviewed_by text"),
        migrations.RunSQL("CREATE INDEX shop_article_reviewed_by ON shop_article ({column})"),
    ]
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The test project copied to a temporary directory, with the migration
    file `pgtrail sql` printed on a developer's database migrated to 0001."""
    directory = tmp_path_factory.mktemp("django") / "app"
    shutil.copytree(HERE / "django_project", directory, ignore=shutil.ignore_patterns("__pycache__"))
    dev = new_database()
    try:
        migrate(directory, dev.url, "shop", "0001")
        install = pgtrail(dev.url, CONFIG, "sql").stdout
    finally:
        drop_database(dev)
    assert "\nBEGIN;" not in install and "\nCOMMIT;" not in install
    (directory / "shop" / "migrations" / "0002_pgtrail.sql").write_text(install)
    return directory


def migrate(directory: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGTRAIL_DJANGO_DATABASE_URL=url, PYTHONPATH=str(HERE.parent), DJANGO_SETTINGS_MODULE="project.settings")
    return subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", *args], cwd=directory, env=env, capture_output=True, text=True
    )


def write_migrations(directory: Path, backfill: str, column: str | None) -> None:
    migrations = directory / "shop" / "migrations"
    (migrations / "0002_pgtrail.py").write_text(PGTRAIL_MIGRATION.format(backfill=backfill))
    review = migrations / "0003_review.py"
    if column is None:
        review.unlink(missing_ok=True)
    else:
        review.write_text(REVIEW_MIGRATION.format(column=column))


def applied(db) -> list[str]:
    with db.connect(autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM django_migrations WHERE app = 'shop' ORDER BY id")]


def test_migrate_applies_pgtrail_all_or_nothing_and_reruns_once_fixed(project, create_database):
    db = create_database()
    has_pgtrail = "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgtrail'"

    # The pgtrail migration fails after the install, in its own transaction: nothing of it stays.
    write_migrations(project, backfill="no_such_column", column=None)
    run = migrate(project, db.url)
    assert run.returncode != 0 and "no_such_column" in run.stderr, run.stderr
    assert db.scalar(has_pgtrail) == 0, "pgtrail must roll back with the migration that failed"
    assert applied(db) == ["0001_initial"], "Django commits each migration on its own"

    # Fixed, it applies; a later migration that fails rolls back alone and reruns once fixed.
    write_migrations(project, backfill="'draft'", column="no_such_column")
    run = migrate(project, db.url)
    assert run.returncode != 0 and "no_such_column" in run.stderr, run.stderr
    assert applied(db) == ["0001_initial", "0002_pgtrail"]
    assert db.scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'reviewed_by'") == 0

    write_migrations(project, backfill="'draft'", column="reviewed_by")
    run = migrate(project, db.url)
    assert run.returncode == 0, run.stderr
    assert applied(db) == ["0001_initial", "0002_pgtrail", "0003_review"]
    assert pgtrail(db.url, CONFIG, "plan").stdout == "", "the database matches the config"
    with db.connect() as conn:
        conn.execute("INSERT INTO shop_article (title, status, reviewed_by) VALUES ('x', 'draft', 'y')")
    assert db.scalar("SELECT count(*) FROM pgtrail.changes WHERE table_name = 'shop_article'") == 1


@pytest.fixture(scope="module")
def django_db(project):
    """A database migrated by the project, and Django set up on it."""
    db = new_database()
    write_migrations(project, backfill="'draft'", column="reviewed_by")
    run = migrate(project, db.url)
    assert run.returncode == 0, run.stderr
    os.environ["PGTRAIL_DJANGO_DATABASE_URL"] = db.url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    sys.path.insert(0, str(project))
    import django

    django.setup()
    yield db
    from django.db import connections

    connections.close_all()
    drop_database(db)


def article_changes(db, pk):
    with db.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT actor_id, actor_name, actor_type, reason, context, new_values->>'status' "
            "FROM pgtrail.changes WHERE table_name = 'shop_article' AND pk = jsonb_build_object('id', %s::int) "
            "AND op = 'UPDATE' ORDER BY id",
            (pk,),
        ).fetchall()


def test_a_view_records_the_logged_in_user_the_request_and_the_reason(django_db):
    from django.contrib.auth.models import User
    from django.test import Client
    from shop.models import Article

    from pgtrail_context.django import audited_atomic

    user = User.objects.create_user("moderator1", email="mod@example.com")
    with audited_atomic(actor_type="system", actor_name="seed"):
        article = Article.objects.create(title="hello")
    client = Client()
    client.force_login(user)

    response = client.post(f"/articles/{article.pk}/publish", {"reason": "looks fine"}, HTTP_X_REQUEST_ID="req-7")
    assert response.status_code == 204
    [(actor_id, actor_name, actor_type, reason, context, status)] = article_changes(django_db, article.pk)
    assert (actor_id, actor_name, actor_type, reason, status) == (str(user.pk), "mod@example.com", "user", "looks fine", "published")
    assert context["request_id"] == "req-7" and context["ip"] == "127.0.0.1"

    # A view that raises after its change: rolled back, nothing recorded.
    broken = Client(raise_request_exception=False)
    broken.force_login(user)
    assert broken.post(f"/articles/{article.pk}/break").status_code == 500
    assert len(article_changes(django_db, article.pk)) == 1
    article.refresh_from_db()
    assert article.status == "published"


def test_atomic_requests_and_an_actor_taken_from_elsewhere(django_db):
    from django.test import Client, override_settings
    from shop.models import Article

    from pgtrail_context.django import audited_atomic

    with audited_atomic(actor_type="system"):
        article = Article.objects.create(title="api")

    def from_api_key(request):
        return {"actor_id": request.headers["X-Api-Key"], "actor_type": "service", "reason": "api call"}

    with override_settings(PGTRAIL_ATOMIC_REQUESTS=True, PGTRAIL_CONTEXT_FROM_REQUEST=from_api_key):
        client = Client(raise_request_exception=False)
        assert client.post(f"/articles/{article.pk}/archive", {"fail": "1"}, HTTP_X_API_KEY="key-9").status_code == 500
        assert client.post(f"/articles/{article.pk}/archive", HTTP_X_API_KEY="key-9").status_code == 204
    [(actor_id, _, actor_type, reason, _, status)] = article_changes(django_db, article.pk)
    assert (actor_id, actor_type, reason, status) == ("key-9", "service", "api call", "archived")
