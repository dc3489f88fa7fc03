from django.urls import path

from messaging import views

app_name = "messaging"

urlpatterns = [
    # The local storage backend's signed single-use upload (PUT) and download (GET) URLs.
    path("files/<path:key>", views.file_object, name="file-object"),
]
