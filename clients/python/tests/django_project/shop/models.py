"""The test app's one model."""

from django.db import models


class Article(models.Model):
    title = models.TextField()
    status = models.TextField(default="draft")
