"""The web client's URLs (mchat/urls.py includes these at the root): sign-in pages, the MQTT
credential and the page shell for `/` and `/c/...` (deep links)."""

from django.urls import path, re_path

from org import views_web

urlpatterns = [
    path("login/", views_web.sign_in, name="web-login"),
    path("password/", views_web.password_change, name="web-password"),
    path("logout/", views_web.sign_out, name="web-logout"),
    path("api/web/mqtt-credential", views_web.mqtt_credential, name="web-mqtt-credential"),
    path("", views_web.web_shell, name="web-shell"),
    re_path(r"^c/(?P<rest>.*)$", views_web.web_shell, name="web-shell-deep-link"),
]
