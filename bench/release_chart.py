"""The chart bench/releases.py releases: ``4 * apps + 10`` objects (50 with the default 10 apps).

Per app: a ConfigMap, a Secret, a Deployment reading both, and its Service.
Beside them: two StatefulSets with their headless Services, two Jobs, four
ServiceAccounts. Every container runs ``sleep`` (the test kubelet runs a
container's command as a local process and reports it ready once it stays up;
a Job's ``true`` completes). Requests and limits are stated, so the same
objects fit envhub's quota and run bare under helm alike.

A round changes ``revision`` in values.yaml: the ConfigMaps' data and the
pod templates' ``checksum/config`` annotation (the usual way a chart rolls its
pods when its configuration changes), so an update rolls every Deployment and
StatefulSet. The Jobs do not change (a Job's template cannot be updated).
"""

from __future__ import annotations

from pathlib import Path

CHART_PATH = "deploy/chart"
FIXED_OBJECTS = 10  # 2 StatefulSets, 2 headless Services, 2 Jobs, 4 ServiceAccounts

_RESOURCES = """\
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {cpu: 50m, memory: 32Mi}
"""

_APPS = (
    """\
{{- range $i := until (int .Values.apps) }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-{{ $i }}-config
  namespace: {{ $.Release.Namespace }}
data:
  REVISION: {{ $.Values.revision | quote }}
  GREETING: "hello from app {{ $i }}"
---
apiVersion: v1
kind: Secret
metadata:
  name: app-{{ $i }}-secret
  namespace: {{ $.Release.Namespace }}
type: Opaque
stringData:
  TOKEN: "token-{{ $i }}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{{ $i }}
  namespace: {{ $.Release.Namespace }}
  labels: {app.kubernetes.io/name: app-{{ $i }}}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: app-{{ $i }}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: app-{{ $i }}}
      annotations:
        checksum/config: {{ $.Values.revision | quote }}
    spec:
      containers:
        - name: app
          image: busybox:1.36
          command: ["sleep", "86400"]
          ports:
            - {containerPort: 8080, protocol: TCP}
          envFrom:
            - configMapRef: {name: app-{{ $i }}-config}
            - secretRef: {name: app-{{ $i }}-secret}
"""
    + _RESOURCES
    + """\
---
apiVersion: v1
kind: Service
metadata:
  name: app-{{ $i }}
  namespace: {{ $.Release.Namespace }}
spec:
  selector: {app.kubernetes.io/name: app-{{ $i }}}
  ports:
    - {name: http, port: 80, targetPort: 8080, protocol: TCP}
{{- end }}
"""
)

_FIXED = (
    """\
{{- range $i := until 2 }}
---
apiVersion: v1
kind: Service
metadata:
  name: db-{{ $i }}
  namespace: {{ $.Release.Namespace }}
spec:
  clusterIP: None
  selector: {app.kubernetes.io/name: db-{{ $i }}}
  ports:
    - {name: db, port: 5432, targetPort: 5432, protocol: TCP}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db-{{ $i }}
  namespace: {{ $.Release.Namespace }}
spec:
  serviceName: db-{{ $i }}
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: db-{{ $i }}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: db-{{ $i }}}
      annotations:
        checksum/config: {{ $.Values.revision | quote }}
    spec:
      containers:
        - name: db
          image: postgres:16
          command: ["sleep", "86400"]
          ports:
            - {containerPort: 5432, protocol: TCP}
"""
    + _RESOURCES
    + """\
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate-{{ $i }}
  namespace: {{ $.Release.Namespace }}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
          command: ["true"]
"""
    + _RESOURCES
    + """\
{{- end }}
{{- range $i := until 4 }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: worker-{{ $i }}
  namespace: {{ $.Release.Namespace }}
{{- end }}
"""
)


def objects(apps: int) -> int:
    return 4 * apps + FIXED_OBJECTS


def write_chart(folder: Path, *, apps: int, revision: int) -> None:
    """The chart in ``folder`` (made or rewritten), its values at ``revision``."""
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "Chart.yaml").write_text("apiVersion: v2\nname: shop\nversion: 1.0.0\n")
    (folder / "values.yaml").write_text(f"apps: {apps}\nrevision: {revision}\n")
    (folder / "templates" / "apps.yaml").write_text(_APPS)
    (folder / "templates" / "fixed.yaml").write_text(_FIXED)
