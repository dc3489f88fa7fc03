from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from mchat.api_docs import SwaggerView
from mchat.health import healthz, metrics

urlpatterns = [
    path("admin/2fa/", include("org.twofactor.urls")),  # before the admin: its second sign-in step
    path("admin/", admin.site.urls),
    path("oidc/", include("org.oidc")),  # console single sign-on (404 unless configured)
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="prometheus-metrics"),
    path("", include("org.urls")),
    path("", include("messaging.urls")),
    path("", include("org.urls_web")),
    path("", include("audit.urls")),
]
