import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.ingest.common.IngestCommonPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A real single-node OpenSearch 2.19 server started from the classpath, for development,
 * tests and CI on machines without Docker or the distribution tarball.
 *
 * <p>Arguments are OpenSearch settings as {@code key=value}; they override the defaults
 * below. {@code path.home} is required. The process prints a line starting with
 * {@code READY} once HTTP is bound and runs until SIGTERM/SIGINT, which close the node
 * cleanly so that a restart on the same {@code path.data} keeps the indexes.
 */
public final class Main {
    /** The module plugins a stock distribution ships that flusso relies on. */
    private static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,         // HTTP transport
        CommonAnalysisPlugin.class, // word_delimiter_graph, asciifolding, pattern, ...
        PainlessPlugin.class,       // scripts
        IngestCommonPlugin.class,   // ingest pipelines (the sink's `pipeline` option)
        MapperExtrasPlugin.class,   // scaled_float, rank_feature, ...
        ReindexPlugin.class);       // _reindex, _delete_by_query

    /** Node's constructor taking classpath plugins is protected: expose it. */
    private static final class DevNode extends Node {
        DevNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }
    }

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        Settings.Builder b = Settings.builder()
            .put("cluster.name", "flusso-dev")
            .put("node.name", "flusso-dev-0")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", "59200")
            .put("transport.port", "59300")
            // Dev disks are often nearly full; never flip indexes to read-only for it.
            .put("cluster.routing.allocation.disk.threshold_enabled", false);
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("argument " + arg + " is not key=value");
            }
            b.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        String home = b.get("path.home");
        if (home == null) {
            throw new IllegalArgumentException("path.home=<dir> is required");
        }
        if (b.get("path.data") == null) {
            b.put("path.data", Path.of(home, "data").toString());
        }
        if (b.get("path.logs") == null) {
            b.put("path.logs", Path.of(home, "logs").toString());
        }
        Path config = Files.createDirectories(Path.of(home, "config"));
        Settings settings = b.build();
        String nodeName = settings.get("node.name");
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> nodeName);

        Node node = new DevNode(env, PLUGINS);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "flusso-dev-shutdown"));
        node.start();
        System.out.println("READY http://" + settings.get("network.host") + ":" + settings.get("http.port"));
        System.out.flush();
        // OpenSearch threads are daemons: keep main alive until the shutdown hook ran.
        closed.await();
    }
}
