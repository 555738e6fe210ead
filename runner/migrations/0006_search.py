"""Full-text search over runs' code and output (runner/selectors/search.py reads it).

SQLite: an FTS5 table `runner_search` kept by triggers, one row per run's code (rowid = 2 * execution
id + 1, kind `code`: the code and any error) and per output chunk with text (rowid = 2 * chunk id,
kind `output`; the first 20 chunks of a run, 16 KiB of each, so a flood of output costs little to
index), with the owner as a token (`u<id>`), so a user's search only ever matches their own rows. Postgres: GIN indexes on the same
to_tsvector('simple', ...) expressions that django.contrib.postgres.search's SearchVector builds.
Titles need no index: they are matched among the user's own sessions.
"""

from django.db import migrations

# What is indexed of a run's output: its first OUTPUT_CHUNKS chunks, OUTPUT_CHARS characters of
# each, ANSI colour codes removed (runner/selectors/search.py filters and builds the same).
OUTPUT_CHUNKS = 20
OUTPUT_CHARS = 16384
# SQLite has no regexp_replace (and its parser allows ~20 nested calls), so colour codes are
# removed in steps: drop a leading "0;", "1;" or "01;", then a tens digit 2/3/4/9 (ESC[31m ->
# ESC[1m), then ESC[<digit>m; any other escape leaves at worst a stray token.
_SGR_STEPS = [("[01;", "["), ("[0;", "["), ("[1;", "["), ("[3", "["), ("[9", "["), ("[4", "["), ("[2", "[")]
_SGR_STEPS += [(f"[{digit}m", None) for digit in range(10)]


def _sqlite_output_text(column: str) -> str:
    text = f"substr({column}, 1, {OUTPUT_CHARS})"
    stripped = text
    for find, into in _SGR_STEPS:
        stripped = f"replace({stripped}, char(27) || '{find}', " + (f"char(27) || '{into}'" if into else "' '") + ")"
    return f"CASE WHEN instr({text}, char(27)) > 0 THEN replace({stripped}, char(27), ' ') ELSE {text} END"


def _sqlite_code_text(row: str) -> str:
    return f"{row}.code || char(10) || {row}.error_name || ' ' || {row}.error_value"


SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE runner_search USING fts5(body, owner, kind, execution_id UNINDEXED, tokenize = 'unicode61')",
    f"""CREATE TRIGGER runner_search_code AFTER INSERT ON runner_execution BEGIN
        INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT NEW.id * 2 + 1, {_sqlite_code_text("NEW")}, 'u' || s.owner_id, 'code', NEW.id
        FROM runner_chatsession s WHERE s.id = NEW.session_id;
    END""",
    f"""CREATE TRIGGER runner_search_code_changed AFTER UPDATE OF code, error_name, error_value ON runner_execution
    WHEN NEW.code != OLD.code OR NEW.error_name != OLD.error_name OR NEW.error_value != OLD.error_value BEGIN
        DELETE FROM runner_search WHERE rowid = OLD.id * 2 + 1;
        INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT NEW.id * 2 + 1, {_sqlite_code_text("NEW")}, 'u' || s.owner_id, 'code', NEW.id
        FROM runner_chatsession s WHERE s.id = NEW.session_id;
    END""",
    f"""CREATE TRIGGER runner_search_output AFTER INSERT ON runner_outputchunk
    WHEN NEW."index" < {OUTPUT_CHUNKS} AND NEW.text != '' BEGIN
        INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT NEW.id * 2, {_sqlite_output_text("NEW.text")}, 'u' || s.owner_id, 'output', NEW.execution_id
        FROM runner_execution e JOIN runner_chatsession s ON s.id = e.session_id WHERE e.id = NEW.execution_id;
    END""",
    """CREATE TRIGGER runner_search_code_gone AFTER DELETE ON runner_execution BEGIN
        DELETE FROM runner_search WHERE rowid = OLD.id * 2 + 1;
    END""",
    f"""CREATE TRIGGER runner_search_output_gone AFTER DELETE ON runner_outputchunk WHEN OLD."index" < {OUTPUT_CHUNKS} BEGIN
        DELETE FROM runner_search WHERE rowid = OLD.id * 2;
    END""",
    f"""INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT e.id * 2 + 1, {_sqlite_code_text("e")}, 'u' || s.owner_id, 'code', e.id
        FROM runner_execution e JOIN runner_chatsession s ON s.id = e.session_id""",
    f"""INSERT INTO runner_search(rowid, body, owner, kind, execution_id)
        SELECT c.id * 2, {_sqlite_output_text("c.text")}, 'u' || s.owner_id, 'output', c.execution_id
        FROM runner_outputchunk c JOIN runner_execution e ON e.id = c.execution_id JOIN runner_chatsession s ON s.id = e.session_id
        WHERE c."index" < {OUTPUT_CHUNKS} AND c.text != ''""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS runner_search_code",
    "DROP TRIGGER IF EXISTS runner_search_code_changed",
    "DROP TRIGGER IF EXISTS runner_search_output",
    "DROP TRIGGER IF EXISTS runner_search_code_gone",
    "DROP TRIGGER IF EXISTS runner_search_output_gone",
    "DROP TABLE IF EXISTS runner_search",
]
# The very expressions SearchVector builds in runner/selectors/search.py (Postgres matches them).
POSTGRES_CREATE = [
    "CREATE INDEX IF NOT EXISTS runner_outputchunk_text_search ON runner_outputchunk USING gin "
    "(to_tsvector('simple'::regconfig, COALESCE(regexp_replace(LEFT(\"text\", " + str(OUTPUT_CHARS) + "), "
    "'\\x1b\\[[0-9;?]*[A-Za-z]|<', ' ', 'g'), ''))) WHERE \"index\" < " + str(OUTPUT_CHUNKS),
    "CREATE INDEX IF NOT EXISTS runner_execution_code_search ON runner_execution USING gin "
    "(to_tsvector('simple'::regconfig, COALESCE(\"code\", '') || ' ' || COALESCE(\"error_name\", '') "
    "|| ' ' || COALESCE(\"error_value\", '')))",
]
POSTGRES_DROP = [
    "DROP INDEX IF EXISTS runner_outputchunk_text_search",
    "DROP INDEX IF EXISTS runner_execution_code_search",
]


def _run(statements_by_vendor: dict[str, list[str]]):
    def apply(apps, schema_editor) -> None:
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ("runner", "0003_execution_session_status_index"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        ),
    ]
