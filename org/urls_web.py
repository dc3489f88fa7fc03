"""The web client's URLs (mchat/urls.py includes these at the root): sign-in pages (password and
single sign-on), the MQTT credential, the employee's sign-ins, and the page shell for `/` and
`/c/...` (deep links)."""

from django.urls import path, re_path

from org import views_web, views_web_sessions, web_oidc

urlpatterns = [
    path("login/", views_web.sign_in, name="web-login"),
    path("login/sso/", web_oidc.start, name="web-sso"),
    path("login/sso/callback/", web_oidc.callback, name=web_oidc.CALLBACK_URL_NAME),
    path("password/", views_web.password_change, name="web-password"),
    path("logout/", views_web.sign_out, name="web-logout"),
    path("api/web/mqtt-credential", views_web.mqtt_credential, name="web-mqtt-credential"),
    path("api/web/sessions", views_web_sessions.sessions_list, name="web-sessions"),
    path("api/web/sessions/<int:session_id>/end", views_web_sessions.session_end, name="web-session-end"),
    path("", views_web.web_shell, name="web-shell"),
    re_path(r"^c/(?P<rest>.*)$", views_web.web_shell, name="web-shell-deep-link"),
]
