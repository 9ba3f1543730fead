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

	"github.com/flusso/flusso/pkg/broker"
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
	Deploy        struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// composeFile reads docker-compose.yml.
func composeFile(t *testing.T) map[string]composeService {
	t.Helper()
	var file struct {
		Services map[string]composeService `yaml:"services"`
	}
	readYAML(t, "../docker-compose.yml", &file)
	return file.Services
}

// pipeline reports whether a compose service is a flusso process.
func (s composeService) pipeline() bool {
	return len(s.Command) > 0 && s.Command[0] == "run" && s.Image == "flusso:dev"
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

// TestCompose: docker-compose.yml parses; `docker compose up` alone runs the dev
// services, a NATS cluster and the flusso services: a capture and a standby, three
// assemblers and one writer per sink of the config they mount, against every node of
// the compose NATS cluster, with the secrets from the environment.
func TestCompose(t *testing.T) {
	services := composeFile(t)
	for _, dev := range []string{"postgres", "opensearch", "nats", "nats-1", "nats-2"} {
		if _, ok := services[dev]; !ok {
			t.Errorf("docker-compose.yml: no %s service", dev)
		}
	}

	byRole := map[string][]string{}
	var sinks []string
	for name, s := range services {
		if len(s.Profiles) > 0 {
			t.Errorf("service %s: in profiles %v: docker compose up without flags must start it", name, s.Profiles)
		}
		if !s.pipeline() {
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
		for _, k := range []string{"FLUSSO_CONFIG", "FLUSSO_NATS_URL", "FLUSSO_NATS_REPLICAS", "DATABASE_URL", "FLUSSO_PUBLIC_ADDRESS"} {
			if s.Environment[k] == "" {
				t.Errorf("service %s: %s not set", name, k)
			}
		}
		for _, u := range strings.Split(s.Environment["FLUSSO_NATS_URL"], ",") {
			host, _, _ := strings.Cut(strings.TrimPrefix(u, "nats://"), ":")
			if _, ok := services[host]; !ok || !strings.HasPrefix(u, "nats://") {
				t.Errorf("service %s: FLUSSO_NATS_URL names %q, not a compose nats service", name, u)
			}
			if _, ok := s.DependsOn[host]; !ok {
				t.Errorf("service %s: does not depend on %s", name, host)
			}
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
	if len(byRole["capture"]) != 2 {
		t.Errorf("capture services: %v, want an active one and a standby", byRole["capture"])
	}
	if a := byRole["assembler"]; len(a) != 1 || services[a[0]].Deploy.Replicas != 3 {
		t.Errorf("assembler services: %v, want one of 3 replicas (--scale changes it)", a)
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

// topology is what a deployment runs and how it is told where things are: its
// processes as the `flusso run` arguments each gets (a replica is one more), the
// environment variables its processes share, and the streams and consumers it tells
// the operator to look at with the nats CLI.
type topology struct {
	procs     []string // sorted; e.g. "--role writer --sink primary"
	env       []string // sorted names
	streams   []string // sorted: "stream info S" and "consumer info S C"
	envSource string
}

// natsInfo finds the nats CLI's stream and consumer info commands in text.
var natsInfo = regexp.MustCompile(`\b(stream info [A-Z_]+|consumer info [A-Z_]+ [a-z_{}. ]+?)\s*(?:#|\n|$|")`)

func infoCommands(text string) []string {
	var out []string
	for _, m := range natsInfo.FindAllStringSubmatch(text, -1) {
		if c := strings.TrimSpace(m[1]); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func composeTopology(t *testing.T) topology {
	t.Helper()
	var top topology
	env := map[string]bool{}
	for _, s := range composeFile(t) {
		if !s.pipeline() {
			continue
		}
		for range max(1, s.Deploy.Replicas) {
			top.procs = append(top.procs, strings.Join(s.Command[1:], " "))
		}
		for k := range s.Environment {
			env[k] = true
		}
	}
	body, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	top.env, top.streams = slices.Sorted(maps.Keys(env)), infoCommands(string(body))
	slices.Sort(top.procs)
	return top
}

// nativeTopology reads deploy/demo/cluster.sh (make demo-cluster): its PROCS, the
// variables it exports and sets on a process's command line, its info commands.
func nativeTopology(t *testing.T) topology {
	t.Helper()
	body, err := os.ReadFile("demo/cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	var top topology
	_, procs, ok := strings.Cut(text, "\nPROCS=(\n")
	if !ok {
		t.Fatal("demo/cluster.sh: no PROCS=( list")
	}
	procs, _, _ = strings.Cut(procs, "\n)")
	for _, line := range strings.Split(procs, "\n") {
		_, args, _ := strings.Cut(strings.Trim(strings.TrimSpace(line), `"`), " ")
		top.procs = append(top.procs, args)
	}
	env := map[string]bool{}
	// export NAME=… for every process; NAME="…" setsid … for one.
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:export ([A-Z][A-Z0-9_]*)=|([A-Z][A-Z0-9_]*)="[^"]*" setsid )`).FindAllStringSubmatch(text, -1) {
		env[m[1]+m[2]] = true
	}
	top.env, top.streams = slices.Sorted(maps.Keys(env)), infoCommands(text)
	slices.Sort(top.procs)
	return top
}

// helmTopology renders what the chart's defaults run: replicas of each role's
// Deployment with the arguments its template gives, the variables of the pod template
// and of the Secret (for the sinks of values.yaml), the info commands of NOTES.txt
// for those sinks.
func helmTopology(t *testing.T) topology {
	t.Helper()
	const chart = "helm/flusso/"
	var values struct {
		NATS struct {
			Replicas int `yaml:"replicas"`
		} `yaml:"nats"`
		Capture   struct{ Replicas int } `yaml:"capture"`
		Assembler struct{ Replicas int } `yaml:"assembler"`
		Writers   []struct {
			Sink     string `yaml:"sink"`
			Replicas int    `yaml:"replicas"`
		} `yaml:"writers"`
		Secrets struct {
			Sinks map[string]any `yaml:"sinks"`
		} `yaml:"secrets"`
	}
	readYAML(t, chart+"values.yaml", &values)
	read := func(name string) string {
		body, err := os.ReadFile(chart + "templates/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	var top topology
	for _, r := range []struct {
		file, args string
		replicas   int
	}{{"capture.yaml", `"--role" "capture"`, values.Capture.Replicas}, {"assembler.yaml", `"--role" "assembler"`, values.Assembler.Replicas}} {
		if !strings.Contains(read(r.file), r.args) {
			t.Errorf("%s does not run %s", r.file, r.args)
		}
		for range r.replicas {
			top.procs = append(top.procs, strings.ReplaceAll(strings.ReplaceAll(r.args, `"`, ""), "  ", " "))
		}
	}
	if !strings.Contains(read("writers.yaml"), `"--role" "writer" "--sink" $sink`) {
		t.Error("writers.yaml does not run --role writer --sink <sink>")
	}
	notes := read("NOTES.txt")
	for _, w := range values.Writers {
		for range max(1, w.Replicas) {
			top.procs = append(top.procs, "--role writer --sink "+w.Sink)
		}
	}
	env := map[string]bool{}
	for _, m := range regexp.MustCompile(`- name: ([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(read("_helpers.tpl"), -1) {
		env[m[1]] = true
	}
	secret := read("secret.yaml")
	for _, m := range regexp.MustCompile(`(?m)^\s+([A-Z][A-Z0-9_]*): `).FindAllStringSubmatch(secret, -1) {
		env[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`\{\{ \$prefix \}\}(_OPENSEARCH_[A-Z]+):`).FindAllStringSubmatch(secret, -1) {
		for sink := range values.Secrets.Sinks {
			env[strings.ToUpper(sink)+m[1]] = true
		}
	}
	var streams []string
	for _, c := range infoCommands(notes) {
		if strings.Contains(c, "{{ .sink }}") {
			for _, w := range values.Writers {
				streams = append(streams, strings.ReplaceAll(c, "{{ .sink }}", w.Sink))
			}
			continue
		}
		streams = append(streams, c)
	}
	slices.Sort(streams)
	top.env, top.streams = slices.Sorted(maps.Keys(env)), streams
	slices.Sort(top.procs)
	if values.NATS.Replicas != 3 {
		t.Errorf("values.yaml nats.replicas = %d, want 3 as compose and make demo-cluster", values.NATS.Replicas)
	}
	return top
}

// TestTopology: docker-compose.yml, the Helm chart and make demo-cluster
// (deploy/demo/cluster.sh) run the same processes, give them the same variables and
// show the same streams and consumers, which are the broker's and those of the demo's
// sinks; every FLUSSO_* variable is one `flusso run` reads.
func TestTopology(t *testing.T) {
	compose, native, helm := composeTopology(t), nativeTopology(t), helmTopology(t)
	want := []string{"--role assembler", "--role assembler", "--role assembler", "--role capture", "--role capture", "--role writer --sink primary"}
	for name, top := range map[string]topology{"docker-compose.yml": compose, "demo/cluster.sh": native, "the Helm chart": helm} {
		if !slices.Equal(top.procs, want) {
			t.Errorf("%s runs %q, want %q", name, top.procs, want)
		}
	}
	if !slices.Equal(compose.env, native.env) {
		t.Errorf("variables: docker-compose.yml sets %v, demo/cluster.sh %v", compose.env, native.env)
	}
	for _, k := range compose.env {
		if !slices.Contains(helm.env, k) {
			t.Errorf("variables: docker-compose.yml sets %s, the Helm chart does not (it sets %v)", k, helm.env)
		}
	}
	cfg, err := config.Load("demo/flusso.toml")
	if err != nil {
		t.Fatal(err)
	}
	streams := []string{"consumer info " + broker.ChangesStream + " " + broker.AssemblerConsumer,
		"stream info " + broker.ChangesStream, "stream info " + broker.DocsStream}
	for _, s := range cfg.Sinks {
		streams = append(streams, "consumer info "+broker.DocsStream+" "+broker.WriterConsumer(s.Name))
	}
	slices.Sort(streams)
	for name, top := range map[string]topology{"docker-compose.yml": compose, "demo/cluster.sh": native, "the Helm chart's NOTES.txt": helm} {
		if !slices.Equal(top.streams, streams) {
			t.Errorf("%s shows %q, want %q", name, top.streams, streams)
		}
	}

	help, err := exec.Command("go", "run", "../cmd/flusso", "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("flusso run --help: %v\n%s", err, help)
	}
	for _, k := range helm.env {
		if strings.HasPrefix(k, "FLUSSO_") && k != "FLUSSO_LOG_FORMAT" && !strings.Contains(string(help), "$"+k+"]") {
			t.Errorf("%s is not a variable of flusso run (--help)", k)
		}
	}
}
