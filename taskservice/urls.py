from django.contrib import admin
from django.urls import include, path

from tasks import views

urlpatterns = [
    # The dashboard, /health and /metrics: what any project that installs the app includes.
    path("", include("tasks.urls")),
    path("favicon.ico", views.favicon, name="favicon"),
    path("api/", include("tasks.api.urls")),
    path("admin/", admin.site.urls),
]

handler500 = "tasks.api.exceptions.server_error"
