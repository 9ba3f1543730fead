// Package deploy holds the deployment files: the demo (demo/), the dev services
// (dev/), the Helm chart (helm/) and, at the repository root, docker-compose.yml and
// the Dockerfile. None of them can run here (no Docker engine, no cluster); these
// tests keep them valid and consistent with the CLI and with each other.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/flusso/flusso/pkg/config"
)

var roles = []string{"capture", "assembler", "writer"}

// TestDemoConfig: the demo's flusso.toml and schemas load.
func TestDemoConfig(t *testing.T) {
	cfg, err := config.Load("demo/flusso.toml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ix := range cfg.Indexes {
		names = append(names, ix.Name)
	}
	if !slices.Equal(names, []string{"users", "products"}) {
		t.Errorf("demo indexes = %v, want users and products", names)
	}
	if cfg.Prefix != "demo_" {
		t.Errorf("demo prefix = %q: demo.sh resets the demo_* indexes", cfg.Prefix)
	}
}

type composeService struct {
	Profiles      []string          `yaml:"profiles"`
	Image         string            `yaml:"image"`
	Build         any               `yaml:"build"`
	Command       []string          `yaml:"command"`
	Environment   map[string]string `yaml:"environment"`
	Volumes       []string          `yaml:"volumes"`
	Ports         []string          `yaml:"ports"`
	ContainerName string            `yaml:"container_name"`
	DependsOn     map[string]any    `yaml:"depends_on"`
}

// flag returns the values of --name in args.
func flag(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			out = append(out, args[i+1])
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestCompose: docker-compose.yml parses; its flusso services run one capture, a
// scalable assembler and one writer per sink of the config they mount, against the
// compose NATS, with the secrets from the environment.
func TestCompose(t *testing.T) {
	body, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(body, &file); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, dev := range []string{"postgres", "opensearch", "nats"} {
		if _, ok := file.Services[dev]; !ok {
			t.Errorf("docker-compose.yml: no %s service", dev)
		}
	}

	byRole := map[string][]string{}
	var sinks []string
	for name, s := range file.Services {
		if len(s.Command) == 0 || s.Command[0] != "run" || s.Image != "flusso:dev" {
			continue
		}
		r := flag(s.Command, "role")
		if len(r) != 1 || !slices.Contains(roles, r[0]) {
			t.Errorf("service %s: --role %v, want one of %v", name, r, roles)
			continue
		}
		byRole[r[0]] = append(byRole[r[0]], name)
		if s.Build == nil {
			t.Errorf("service %s: no build: compose would pull flusso:dev instead of building it", name)
		}
		if !slices.Contains(s.Profiles, "pipeline") {
			t.Errorf("service %s: not in the pipeline profile (docker compose up -d --wait starts the dev services only)", name)
		}
		for _, k := range []string{"FLUSSO_CONFIG", "FLUSSO_NATS_URL", "DATABASE_URL", "FLUSSO_PUBLIC_ADDRESS"} {
			if s.Environment[k] == "" {
				t.Errorf("service %s: %s not set", name, k)
			}
		}
		if !strings.HasPrefix(s.Environment["FLUSSO_NATS_URL"], "nats://nats:") {
			t.Errorf("service %s: FLUSSO_NATS_URL = %q, want the compose nats service", name, s.Environment["FLUSSO_NATS_URL"])
		}
		if !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/etc/flusso:ro") }) {
			t.Errorf("service %s: the config is not mounted read-only at /etc/flusso: %v", name, s.Volumes)
		}
		if _, ok := s.DependsOn["nats"]; !ok {
			t.Errorf("service %s: does not depend on nats", name)
		}
		if r[0] == "writer" {
			sk := flag(s.Command, "sink")
			if len(sk) != 1 {
				t.Errorf("service %s: a writer needs exactly one --sink, has %v", name, sk)
			}
			sinks = append(sinks, sk...)
		}
		if r[0] == "assembler" && (s.ContainerName != "" || len(s.Ports) > 0) {
			t.Errorf("service %s: container_name or host ports keep --scale assembler=3 from working", name)
		}
	}
	if len(byRole["capture"]) != 1 {
		t.Errorf("capture services: %v, want exactly one (a standby comes from --scale)", byRole["capture"])
	}
	if len(byRole["assembler"]) != 1 {
		t.Errorf("assembler services: %v, want one, scaled with --scale", byRole["assembler"])
	}

	// The mounted config is the demo's: a writer for each of its sinks, none other.
	cfg, err := config.Load("demo/flusso.toml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range cfg.Sinks {
		want = append(want, s.Name)
	}
	slices.Sort(want)
	slices.Sort(sinks)
	if !slices.Equal(sinks, want) {
		t.Errorf("writers for sinks %v, the config has %v", sinks, want)
	}
}

// TestDockerfile: a static build, a non-root runtime with flusso as entrypoint, and
// the Go version of go.mod.
func TestDockerfile(t *testing.T) {
	body, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	var froms []string
	var user, entrypoint, goVersion string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entrypoint = strings.Join(f[1:], " ")
		case "ARG":
			if v, ok := strings.CutPrefix(f[1], "GO_VERSION="); ok {
				goVersion = v
			}
		}
	}
	if len(froms) < 2 {
		t.Errorf("FROM %v: want a build stage and a runtime stage", froms)
	}
	if !strings.Contains(text, "CGO_ENABLED=0") {
		t.Error("the build is not static (CGO_ENABLED=0)")
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") {
		t.Errorf("USER %q: the runtime must not run as root", user)
	}
	if entrypoint != `["flusso"]` {
		t.Errorf("ENTRYPOINT %s, want [\"flusso\"]", entrypoint)
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil || string(m[1]) != goVersion {
		t.Errorf("Dockerfile GO_VERSION=%s, go.mod says go %s", goVersion, m[1])
	}
}

// helmFuncs are the functions the chart's templates may call: Go's builtins plus
// Helm's and the Sprig functions Helm provides. Parsing needs them declared; a name
// outside this list is a typo the real helm would reject.
var helmFuncs = func() template.FuncMap {
	stub := func(...any) any { return nil }
	m := template.FuncMap{}
	for _, name := range strings.Fields(`
		include tpl required toYaml toJson fromYaml fromJson toToml lookup
		default empty coalesce ternary quote squote nindent indent trim trimSuffix trimPrefix
		trunc replace contains hasPrefix hasSuffix upper lower title printf print
		list dict get set hasKey keys values merge mergeOverwrite concat append first last
		without has uniq sortAlpha join split splitList toString int int64 float64 atoi
		add sub mul div max min sha256sum b64enc b64dec randAlphaNum semverCompare kindIs
		typeOf regexMatch regexReplaceAll until untilStep fail deepCopy omit pick`) {
		m[name] = stub
	}
	return m
}()

// TestHelmChart: every YAML file of the chart parses (templates with text/template,
// the others as YAML), every template it includes is defined, the default config in
// values.yaml loads, and each writer and sink credential names a sink of it.
func TestHelmChart(t *testing.T) {
	const chart = "helm/flusso"
	set := template.New("chart").Funcs(helmFuncs)
	var includes []string
	included := regexp.MustCompile(`(?:include|template) "([^"]+)"`)
	seen := 0
	err := filepath.WalkDir(chart, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chart, path)
		seen++
		switch {
		case strings.HasPrefix(rel, "templates"+string(filepath.Separator)):
			if _, err := set.New(rel).Parse(string(body)); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			for _, m := range included.FindAllStringSubmatch(string(body), -1) {
				includes = append(includes, m[1])
			}
		case strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml"):
			var doc any
			if err := yaml.Unmarshal(body, &doc); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Fatalf("no files under %s", chart)
	}
	for _, name := range includes {
		if set.Lookup(name) == nil {
			t.Errorf("template %q is included but not defined", name)
		}
	}

	var meta struct {
		APIVersion string `yaml:"apiVersion"`
		Name       string `yaml:"name"`
		Version    string `yaml:"version"`
	}
	readYAML(t, filepath.Join(chart, "Chart.yaml"), &meta)
	if meta.APIVersion != "v2" || meta.Name != "flusso" || meta.Version == "" {
		t.Errorf("Chart.yaml: %+v", meta)
	}

	var values struct {
		Config struct {
			Files map[string]string `yaml:"files"`
		} `yaml:"config"`
		Secrets struct {
			Sinks map[string]any `yaml:"sinks"`
		} `yaml:"secrets"`
		Capture struct {
			Replicas int `yaml:"replicas"`
		} `yaml:"capture"`
		Writers []struct {
			Sink string `yaml:"sink"`
		} `yaml:"writers"`
	}
	readYAML(t, filepath.Join(chart, "values.yaml"), &values)
	if values.Capture.Replicas < 2 {
		t.Errorf("capture.replicas = %d: want an active capture and a standby", values.Capture.Replicas)
	}
	dir := t.TempDir()
	for path, body := range values.Config.Files {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "flusso.toml"))
	if err != nil {
		t.Fatalf("values.yaml config.files: %v", err)
	}
	sinks := map[string]bool{}
	for _, s := range cfg.Sinks {
		sinks[s.Name] = true
	}
	for _, w := range values.Writers {
		if !sinks[w.Sink] {
			t.Errorf("values.yaml writers: sink %q is not in config.files flusso.toml", w.Sink)
		}
		delete(sinks, w.Sink)
	}
	for s := range sinks {
		t.Errorf("values.yaml: no writer for sink %q", s)
	}
	for s := range values.Secrets.Sinks {
		if !slices.ContainsFunc(cfg.Sinks, func(k config.Sink) bool { return k.Name == s }) {
			t.Errorf("values.yaml secrets.sinks: %q is not a sink of the config", s)
		}
	}
}

// TestHelmLint runs helm lint and helm template when helm is on PATH (it is not
// installed by the project's scripts), and checks that the rendered manifests parse.
func TestHelmLint(t *testing.T) {
	helm, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("helm is not on PATH; TestHelmChart checks the chart's syntax")
	}
	if out, err := exec.Command(helm, "lint", "--strict", "helm/flusso").CombinedOutput(); err != nil {
		t.Errorf("helm lint --strict: %v\n%s", err, out)
	}
	kinds := render(t, helm, "--api-versions", "monitoring.coreos.com/v1",
		"--set", "secrets.databaseUrl=postgres://u:p@db/app", "--set", "secrets.sinks.primary.password=s3cret")
	want := map[string]int{"Deployment": 3, "ConfigMap": 1, "Secret": 1, "Service": 1, "ServiceMonitor": 1, "ServiceAccount": 1}
	if !maps.Equal(kinds, want) {
		t.Errorf("rendered %v, want %v", kinds, want)
	}
	// Without the Prometheus operator's CRDs, with the operator's own ConfigMap and
	// Secret, and two sinks.
	kinds = render(t, helm, "--set", "config.existingConfigMap=cfg", "--set", "secrets.existingSecret=sec",
		"--set", "writers[0].sink=primary", "--set", "writers[1].sink=replica_eu")
	want = map[string]int{"Deployment": 4, "Service": 1, "ServiceAccount": 1}
	if !maps.Equal(kinds, want) {
		t.Errorf("rendered %v, want %v", kinds, want)
	}
}

// render runs helm template with args and counts the manifests by kind.
func render(t *testing.T, helm string, args ...string) map[string]int {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "demo", "helm/flusso"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	kinds := map[string]int{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("rendered manifests: %v\n%s", err, out)
		}
		if doc.Kind != "" {
			kinds[doc.Kind]++
		}
	}
	return kinds
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
