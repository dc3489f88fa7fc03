from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/2fa/", include("org.twofactor.urls")),  # before the admin: its second sign-in step
    path("admin/", admin.site.urls),
    path("oidc/", include("org.oidc")),  # console single sign-on (404 unless configured)
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("org.urls")),
    path("", include("messaging.urls")),
]
