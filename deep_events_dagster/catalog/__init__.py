"""The event catalog over a pymongo-compatible collection (MongoDB server or embedded montydb)."""
