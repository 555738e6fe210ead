from django.urls import path

from runner import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
]
