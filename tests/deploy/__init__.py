"""Tests of deploy/: the image recipe, the Helm chart, and the chart on a real API server."""
