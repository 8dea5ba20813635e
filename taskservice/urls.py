from django.contrib import admin
from django.urls import include, path, re_path

from tasks import views

urlpatterns = [
    re_path(r"^health/?$", views.health, name="health"),
    # --- REST API (issue 3) ---
    path("api/", include("tasks.api.urls")),
    # --- Live dashboard (issue 4) ---
    # --- Production: metrics (issue 5) ---
    path("admin/", admin.site.urls),
]
