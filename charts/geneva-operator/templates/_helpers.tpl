{{/*
Helpers of the geneva-operator chart. Nothing here may depend on time or randomness:
two renders of the same values must be byte-identical (tests/packaging checks).
*/}}

{{- define "geneva.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "geneva.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "geneva.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "geneva.selectorLabels" -}}
app.kubernetes.io/name: {{ include "geneva.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "geneva.labels" -}}
helm.sh/chart: {{ include "geneva.chart" . }}
app.kubernetes.io/name: {{ include "geneva.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: geneva-operator
{{- end }}

{{- define "geneva.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "geneva.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
<registry>/<repository>:<tag> or @<digest> of (dict "image" <values> "registry" <registry>
"appVersion" <tag default>).
*/}}
{{- define "geneva.imageRef" -}}
{{- $img := .image }}
{{- $repo := $img.repository }}
{{- if .registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .registry) $img.repository }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .appVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* The operator image; its tag defaults to the chart's appVersion. */}}
{{- define "geneva.image" -}}
{{- include "geneva.imageRef" (dict "image" .Values.image "registry" .Values.image.registry "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* The default Ray image: rayImage, in image.registry unless it names its own. */}}
{{- define "geneva.rayImage" -}}
{{- $registry := default .Values.image.registry .Values.rayImage.registry }}
{{- include "geneva.imageRef" (dict "image" .Values.rayImage "registry" $registry "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* Watched namespaces, de-duplicated, as a comma-joined string ("" = all namespaces). */}}
{{- define "geneva.watchNamespacesCsv" -}}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- end }}

{{/*
Namespaces that get the Ray runner ServiceAccount and the Ray NetworkPolicies:
rayRunner.namespaces, else watchNamespaces, else the release namespace. Comma-joined.
*/}}
{{- define "geneva.rayNamespacesCsv" -}}
{{- if .Values.rayRunner.namespaces }}
{{- join "," (uniq .Values.rayRunner.namespaces) }}
{{- else if .Values.watchNamespaces }}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Value checks that the JSON schema cannot express (they relate several keys). */}}
{{- define "geneva.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (not .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: a namespaced install cannot watch all namespaces (it has no cluster-wide permissions)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled=true: without kopf peering every replica would process every GenevaBackfill" }}
{{- end }}
{{- end }}

{{/*
The operator's namespaced permissions. Least privilege, one rule per need:
- genevabackfills: watch them, get one afresh after a refused status write, patch kopf's
  finalizer and last-handled annotation.
- genevabackfills/status: phase, conditions, progress.
- genevabackfills/finalizers: owner references with blockOwnerDeletion on the RayClusters it
  creates (required by the OwnerReferencesPermissionEnforcement admission plugin).
- rayclusters: create, follow and delete the clusters of backfills (never update: patches only).
- events (core and events.k8s.io): kopf posts core/v1 Events; newer clients use events.k8s.io.
- secrets get (optionally by name): the Ray dashboard token of spec.auth.tokenSecretRef.
- pods list/watch, of Ray pods only (label selector ray.io/cluster): why a cluster does not
  start (an image not to be had, a group no node takes) is written on its pods, not on the
  RayCluster. Never get, create or delete: KubeRay manages the pods.
- kopfpeerings: only with peering and explicit namespaces (kopf's namespaced peering).
*/}}
{{- define "geneva.namespacedRules" -}}
- apiGroups: ["geneva.lancedb.com"]
  resources: ["genevabackfills"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["geneva.lancedb.com"]
  resources: ["genevabackfills/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["geneva.lancedb.com"]
  resources: ["genevabackfills/finalizers"]
  verbs: ["update"]
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- if .Values.rbac.secrets.enabled }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- with .Values.rbac.secrets.resourceNames }}
{{- $names := . }}
{{- with $.Values.operator.rayTokenSecret }}
{{- $names = append $names . }}
{{- end }}
  resourceNames: {{ toJson (uniq $names) }}
{{- end }}
{{- end }}
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Cluster-scoped reads kopf makes (scope cluster only):
- customresourcedefinitions list/watch: kopf notices CRDs appearing/changing at runtime.
- namespaces list/watch: kopf resolves --namespace arguments against existing namespaces.
- clusterkopfpeerings: peering when watching all namespaces.
*/}}
{{- define "geneva.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{ include "geneva.kubeRayCRDRule" . }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- if and .Values.peering.enabled (not .Values.watchNamespaces) }}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* What the installed KubeRay supports is read from its RayCluster CRD (get, that one only). */}}
{{- define "geneva.kubeRayCRDRule" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["rayclusters.ray.io"]
  verbs: ["get"]
{{- end }}

{{/* Selector of the Ray pods the NetworkPolicies apply to. */}}
{{- define "geneva.rayPodSelector" -}}
{{- toYaml .Values.networkPolicy.ray.podSelector }}
{{- end }}

{{/* The Ray head pods among them (KubeRay's ray.io/node-type label). */}}
{{- define "geneva.rayHeadSelector" -}}
{{- $head := deepCopy .Values.networkPolicy.ray.podSelector }}
{{- $labels := deepCopy (default (dict) $head.matchLabels) }}
{{- $_ := set $labels "ray.io/node-type" "head" }}
{{- $_ := set $head "matchLabels" $labels }}
{{- toYaml $head }}
{{- end }}
