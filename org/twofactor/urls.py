"""Mounted by mchat/urls.py under admin/2fa/ (before the admin's own URLs)."""

from django.urls import path

from org.twofactor import views

urlpatterns = [
    path("enrol/", views.enrol, name="console-2fa-enrol"),
    path("verify/", views.verify, name="console-2fa-verify"),
]
