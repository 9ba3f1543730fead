// Package telemetry sets up flusso's metrics and traces with the
// OpenTelemetry SDK.
//
// Metrics are always served to Prometheus (the /metrics handler), with OTel
// names translated the Prometheus way: flusso.documents.quarantined becomes
// flusso_documents_quarantined_total. Metrics and traces are also pushed
// over OTLP when the environment names an endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or the per-signal *_TRACES_ENDPOINT and
// *_METRICS_ENDPOINT), over http/protobuf by default or grpc
// (OTEL_EXPORTER_OTLP_PROTOCOL and the per-signal *_TRACES_PROTOCOL and
// *_METRICS_PROTOCOL). Without an endpoint no exporter is installed.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Name is the instrumentation scope of flusso's meters and tracers.
const Name = "github.com/flusso/flusso"

// Transport protocols of OTLP.
const (
	HTTPProtobuf = "http/protobuf"
	GRPC         = "grpc"
)

// flushBuckets are the bounds of flusso.flush.duration in seconds, from a
// millisecond to ten seconds: the SDK's defaults assume milliseconds.
var flushBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Config shapes Setup.
type Config struct {
	// Version is reported as service.version.
	Version string
	Log     *slog.Logger
}

// Provider owns the meter and tracer providers, installed as OTel's
// globals by Setup.
type Provider struct {
	meters   *sdkmetric.MeterProvider
	tracers  *sdktrace.TracerProvider // nil without OTLP traces
	registry *prometheus.Registry
	meter    metric.Meter
	flush    metric.Float64Histogram
}

// Setup builds the providers from the environment and installs them as
// OTel's global meter and tracer providers, with W3C trace context
// propagation. Shutdown flushes what is buffered.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "telemetry")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("telemetry export failed", "err", err)
	}))

	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "flusso"), attribute.String("service.version", cfg.Version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("describing the telemetry resource: %w", err)
	}

	p := &Provider{registry: prometheus.NewRegistry()}
	p.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prom, err := otelprom.New(
		otelprom.WithRegisterer(p.registry),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(), // one scope: the labels would only add noise
	)
	if err != nil {
		return nil, fmt.Errorf("setting up the Prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}

	if endpoint("METRICS") {
		proto := protocol("METRICS", log)
		exp, err := metricExporter(ctx, proto)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		log.Info("exporting metrics over OTLP", "protocol", proto)
	}
	p.meters = sdkmetric.NewMeterProvider(opts...)
	otel.SetMeterProvider(p.meters)

	if endpoint("TRACES") {
		proto := protocol("TRACES", log)
		exp, err := traceExporter(ctx, proto)
		if err != nil {
			return nil, errors.Join(err, p.meters.Shutdown(ctx))
		}
		p.tracers = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		otel.SetTracerProvider(p.tracers)
		log.Info("exporting traces over OTLP", "protocol", proto)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	p.meter = p.meters.Meter(Name)
	p.flush, err = p.meter.Float64Histogram("flusso.flush.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time one sink flush took"),
		metric.WithExplicitBucketBoundaries(flushBuckets...))
	if err != nil {
		return nil, fmt.Errorf("creating flusso.flush.duration: %w", err)
	}
	return p, nil
}

// endpoint reports whether an OTLP endpoint is set for signal (TRACES or
// METRICS), by the general variable or the signal's own.
func endpoint(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// protocol is the OTLP transport of signal: its own variable, else the
// general one, else http/protobuf. An unknown value is warned about and
// replaced by http/protobuf.
func protocol(signal string, log *slog.Logger) string {
	name, v := "OTEL_EXPORTER_OTLP_"+signal+"_PROTOCOL", ""
	if v = strings.TrimSpace(os.Getenv(name)); v == "" {
		name = "OTEL_EXPORTER_OTLP_PROTOCOL"
		v = strings.TrimSpace(os.Getenv(name))
	}
	switch v {
	case HTTPProtobuf, GRPC:
		return v
	case "":
		return HTTPProtobuf
	}
	log.Warn(fmt.Sprintf("%s: unsupported OTLP protocol, using %s (%s or %s expected)", name, HTTPProtobuf, HTTPProtobuf, GRPC),
		"value", v)
	return HTTPProtobuf
}

// The exporters read their endpoint, headers, timeout and TLS settings from
// the standard OTEL_EXPORTER_OTLP_* variables themselves.
func metricExporter(ctx context.Context, proto string) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	if proto == GRPC {
		exp, err = otlpmetricgrpc.New(ctx)
	} else {
		exp, err = otlpmetrichttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("setting up the OTLP metric exporter (%s): %w", proto, err)
	}
	return exp, nil
}

func traceExporter(ctx context.Context, proto string) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if proto == GRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		// The SDK would also speak http/json when the environment asks;
		// flusso's contract is http/protobuf or grpc.
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
	}
	if err != nil {
		return nil, fmt.Errorf("setting up the OTLP trace exporter (%s): %w", proto, err)
	}
	return exp, nil
}

// Handler serves the metrics in the Prometheus exposition format.
func (p *Provider) Handler() http.Handler {
	return promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{})
}

// ObserveFlush records how long one flush of sink took. A nil Provider
// records nothing, so a writer may hold one unconditionally.
func (p *Provider) ObserveFlush(sink string, d time.Duration) {
	if p == nil {
		return
	}
	p.flush.Record(context.Background(), d.Seconds(), metric.WithAttributes(attribute.String("sink", sink)))
}

// Shutdown exports what is buffered and stops the providers.
func (p *Provider) Shutdown(ctx context.Context) error {
	var errs []error
	if p.tracers != nil {
		errs = append(errs, p.tracers.Shutdown(ctx))
	}
	errs = append(errs, p.meters.Shutdown(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutting down telemetry: %w", err)
	}
	return nil
}
