from typing import Any

from django.apps import AppConfig

# The User fields whose change ends what the old credentials allowed (services.accounts).
CREDENTIAL_FIELDS = frozenset({"is_active", "password"})


class RunnerConfig(AppConfig):
    name = "runner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save, pre_save

        user_model = get_user_model()
        pre_save.connect(_note_credentials, sender=user_model, dispatch_uid="runner.credentials.pre")
        post_save.connect(_credentials_saved, sender=user_model, dispatch_uid="runner.credentials.post")


def _note_credentials(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Before a user's save: note whether it deactivates them or changes their password hash."""
    instance._credentials_change = None
    if instance.pk is None or (update_fields is not None and not CREDENTIAL_FIELDS & set(update_fields)):
        return  # a new user, or a save of other fields (a login's last_login)
    before = sender._default_manager.filter(pk=instance.pk).values_list("is_active", "password").first()
    if before is None:
        return
    deactivated = bool(before[0]) and not instance.is_active
    if deactivated or before[1] != instance.password:
        instance._credentials_change = deactivated


def _credentials_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    from runner import services

    deactivated = getattr(instance, "_credentials_change", None)
    if deactivated is not None:
        instance._credentials_change = None
        services.user_credentials_changed(user_id=instance.pk, deactivated=deactivated)
