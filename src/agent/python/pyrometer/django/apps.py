"""The app "pyrometer.django": installing it installs the middleware."""

from django.apps import AppConfig


class PyrometerConfig(AppConfig):
    name = "pyrometer.django"
    label = "pyrometer"
    verbose_name = "pyrometer agent"
    default = True

    def ready(self):
        from django.conf import settings

        from .. import enable
        from . import insert_middleware
        insert_middleware(settings)
        enable()
