"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit in its
own Django process (`python -m tests.oidc_provider.serve`), its own SQLite file, on loopback."""
