"""Sessions belong to a class or to no one but their owner (issue 19).

Existing sessions move once: a chat session goes to its owner's class when the owner is a student
of exactly one class, and stays private otherwise (no class, several classes, or an API session).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def sessions_to_sole_class(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Put each student's chat sessions in their class when they are in exactly one, else leave them private."""
    ChatSession = apps.get_model("runner", "ChatSession")
    Membership = apps.get_model("runner", "Classroom").students.through
    sole_class: dict[int, int | None] = {}
    for user_id, classroom_id in Membership.objects.values_list("user_id", "classroom_id").iterator():
        sole_class[user_id] = None if user_id in sole_class else classroom_id
    by_class: dict[int, list[int]] = {}
    for user_id, classroom_id in sole_class.items():
        if classroom_id is not None:
            by_class.setdefault(classroom_id, []).append(user_id)
    for classroom_id, owner_ids in by_class.items():
        ChatSession.objects.filter(owner_id__in=owner_ids, kind="chat", classroom__isnull=True).update(classroom_id=classroom_id)


class Migration(migrations.Migration):

    dependencies = [
        ("runner", "0010_live_sandbox_limit"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatsession",
            name="classroom",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                related_name="sessions", to="runner.classroom",
            ),
        ),
        migrations.RunPython(sessions_to_sole_class, migrations.RunPython.noop),
    ]
