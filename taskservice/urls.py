from django.contrib import admin
from django.urls import path, re_path

from tasks import views

urlpatterns = [
    re_path(r"^health/?$", views.health, name="health"),
    path("admin/", admin.site.urls),
]
