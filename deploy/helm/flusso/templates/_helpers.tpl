{{/* Names, labels and the pod template shared by every role. */}}

{{- define "flusso.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flusso.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flusso.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flusso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flusso.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flusso.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flusso
{{- end -}}

{{- define "flusso.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "flusso.configMapName" -}}
{{- default (printf "%s-config" (include "flusso.fullname" .)) .Values.config.existingConfigMap -}}
{{- end -}}

{{- define "flusso.secretName" -}}
{{- default (printf "%s-secrets" (include "flusso.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "flusso.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flusso.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A ConfigMap key for a config file path: keys cannot hold "/". */}}
{{- define "flusso.configKey" -}}
{{- . | replace "/" "__" -}}
{{- end -}}

{{/*
The pod template of one role. Call with a dict:
  root: the chart's top context; role: capture, assembler or writer;
  component: the Deployment's component label; args: flusso's arguments;
  spec: the role's values (resources).
*/}}
{{- define "flusso.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
metadata:
  labels:
    {{- include "flusso.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secrets: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "flusso.serviceAccountName" $root }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: 60
  containers:
    - name: {{ .role }}
      image: {{ include "flusso.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        {{- toYaml .args | nindent 8 }}
      env:
        - name: FLUSSO_CONFIG
          value: /etc/flusso/flusso.toml
        {{- with $v.nats.url }}
        - name: FLUSSO_NATS_URL
          value: {{ . | quote }}
        {{- end }}
        - name: FLUSSO_NATS_REPLICAS
          value: {{ $v.nats.replicas | quote }}
        {{- with $v.nats.placementTags }}
        - name: FLUSSO_NATS_PLACEMENT_TAGS
          value: {{ join "," . | quote }}
        {{- end }}
        - name: FLUSSO_SLOT
          value: {{ $v.slot | quote }}
        - name: FLUSSO_PUBLICATION
          value: {{ $v.publication | quote }}
        - name: FLUSSO_PUBLIC_ADDRESS
          value: "0.0.0.0:9464"
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      envFrom:
        - secretRef:
            name: {{ include "flusso.secretName" $root }}
      ports:
        - name: metrics
          containerPort: 9464
          protocol: TCP
      livenessProbe:
        httpGet: {path: /healthz, port: metrics}
        initialDelaySeconds: 10
        periodSeconds: 10
        failureThreshold: 6
      {{- if ne .role "capture" }}
      readinessProbe:
        httpGet: {path: /readyz, port: metrics}
        periodSeconds: 5
      {{- end }}
      resources:
        {{- toYaml .spec.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/flusso
          readOnly: true
        - name: state
          mountPath: /var/lib/flusso
  volumes:
    - name: config
      configMap:
        name: {{ include "flusso.configMapName" $root }}
        {{- if not $v.config.existingConfigMap }}
        items:
          {{- range $path, $_ := $v.config.files }}
          - key: {{ include "flusso.configKey" $path }}
            path: {{ $path }}
          {{- end }}
        {{- end }}
    # The lock flusso refreshes on start; nothing else is written.
    - name: state
      emptyDir: {}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
