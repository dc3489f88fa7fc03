"""The REST API's documentation pages (Swagger UI, ReDoc), served from our own static files."""

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI with its start-up script as a file of its own (`?script`), not inline, so a
    strict Content-Security-Policy (script-src 'self') does not blank the page.

    drf-spectacular's Swagger UI relaxes Cross-Origin-Opener-Policy to `unsafe-none` for
    OAuth2's sign-in pop-up. The API signs in with tokens or the console's session, never
    OAuth2, so the page keeps the same policy as every other page."""

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Cross-Origin-Opener-Policy"] = "same-origin"
        return response
