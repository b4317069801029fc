"""Storage: SQLModel tables and keyword-only functions over an explicit session.

Owns: the schema, engine set-up and every read and write the studio makes; `tables`, `engine` and
`records` hold the parts, this module is the one import the rest of the studio uses.
Ignores: models, torch and the UI.
"""

from studio.storage.engine import make_engine
from studio.storage.preferences import (
    CHOICES,
    delete_generations,
    delete_preference,
    preference_rows,
    rated_rows,
    rating_counts,
    rating_detail,
    set_preference,
)
from studio.storage.records import (
    active_turns,
    begin_generation,
    count_generations,
    create_conversation,
    delete_conversation,
    finish_generation,
    get_conversation,
    get_generation,
    get_or_create_user,
    list_conversations,
    list_generations,
    mark_interrupted,
    ratings_for,
    record_generation,
    rename_conversation,
    set_rating,
)
from studio.storage.search import COUNT_CAP, Filters, find_generations, install_index
from studio.storage.tables import Conversation, Generation, Preference, Rating, Status, User, utcnow

__all__ = [
    "CHOICES",
    "COUNT_CAP",
    "Conversation",
    "Filters",
    "Generation",
    "Preference",
    "Rating",
    "Status",
    "User",
    "active_turns",
    "begin_generation",
    "count_generations",
    "create_conversation",
    "delete_conversation",
    "delete_generations",
    "delete_preference",
    "find_generations",
    "finish_generation",
    "get_conversation",
    "get_generation",
    "get_or_create_user",
    "install_index",
    "list_conversations",
    "list_generations",
    "make_engine",
    "mark_interrupted",
    "preference_rows",
    "rated_rows",
    "rating_counts",
    "rating_detail",
    "ratings_for",
    "record_generation",
    "rename_conversation",
    "set_preference",
    "set_rating",
    "utcnow",
]
