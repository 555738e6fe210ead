from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    # Before the admin's own URLs: the usage view lives under /admin/ but answers 404 to non-staff.
    path("", include("runner.admin_usage")),
    path("", include("runner.admin_live")),
    path("admin/", admin.site.urls),
    path("", include("runner.urls")),
]
