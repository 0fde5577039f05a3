"""Behaviour data and models, hybrid blending, user recommendations, offline evaluation, and the
HTTP API (recsys.api). Entry points: `recsys.answers.Answers` (every answer), `recsys.evaluation`
(offline evaluation), `recsys.behaviour_store` (fitting behaviour into a store version)."""
