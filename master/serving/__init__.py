"""Serving: the gateway as a Knative-style traffic brain (revisions, autoscaler, executors, rollout)."""
