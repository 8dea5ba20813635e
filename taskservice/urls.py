from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # The dashboard, /health, /metrics and the favicon: what any project that installs the
    # app includes.
    path("", include("tasks.urls")),
    path("api/", include("tasks.api.urls")),
    path("admin/", admin.site.urls),
]

handler500 = "tasks.api.exceptions.server_error"
