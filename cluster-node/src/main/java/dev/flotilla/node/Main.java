package dev.flotilla.node;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.flotilla.node.auth.TokenAuth;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code flotilla node}: runs one node until SIGTERM / Ctrl-C, which runs Pekko's coordinated
 * shutdown (the gRPC port unbinds, the node leaves the cluster). Sandboxes keep running and are
 * re-attached when the node starts again on the same data directory.
 *
 * <p>Precedence: flags, then {@code --config FILE}, then environment variables, then defaults.
 */
@Command(name = "flotilla node", mixinStandardHelpOptions = true,
    description = "Run a Flotilla node (the embedded default: one node, H2 journal in the data directory).")
public final class Main implements Callable<Integer> {

  @Option(names = "--grpc-port", description = "gRPC port (default 7070; 0 picks a free one)")
  Integer grpcPort;

  @Option(names = "--grpc-host", description = "interface to serve gRPC on (default 127.0.0.1)")
  String grpcHost;

  @Option(names = "--data-dir", description = "data directory (default ./data)")
  Path dataDir;

  @Option(names = "--config", description = "HOCON file layered over the defaults")
  File config;

  @Option(names = "--seed", description = "a seed node's cluster address host:port (repeatable); none: a single node")
  List<String> seeds = new ArrayList<>();

  @Option(names = "--artery-host", description = "cluster (artery) hostname (default 127.0.0.1)")
  String arteryHost;

  @Option(names = "--artery-port", description = "cluster (artery) port (default 25520; 0 picks a free one)")
  Integer arteryPort;

  public static void main(String[] args) {
    int code = new CommandLine(new Main()).setCaseInsensitiveEnumValuesAllowed(true).execute(args);
    // always: after a shutdown whose actor system did not terminate, Pekko's non-daemon threads
    // would keep the process alive (BoundedTermination)
    System.exit(code);
  }

  /** The node's configuration: flags over --config over application.conf (and its env overrides). */
  Config config() {
    Config c = ConfigFactory.empty();
    if (grpcPort != null) c = c.withValue("flotilla.node.grpc.port", ConfigValueFactory.fromAnyRef(grpcPort));
    if (grpcHost != null) c = c.withValue("flotilla.node.grpc.interface", ConfigValueFactory.fromAnyRef(grpcHost));
    if (dataDir != null) c = c.withValue("flotilla.node.data-dir", ConfigValueFactory.fromAnyRef(dataDir.toString()));
    if (arteryHost != null) c = c.withValue("pekko.remote.artery.canonical.hostname", ConfigValueFactory.fromAnyRef(arteryHost));
    if (arteryPort != null) c = c.withValue("pekko.remote.artery.canonical.port", ConfigValueFactory.fromAnyRef(arteryPort));
    if (!seeds.isEmpty()) {
      List<String> addresses = new ArrayList<>();
      for (String s : seeds) addresses.add(s.startsWith("pekko://") ? s : "pekko://flotilla@" + s);
      c = c.withValue("pekko.cluster.seed-nodes", ConfigValueFactory.fromIterable(addresses));
    }
    if (config != null) {
      if (!config.isFile()) throw new CommandLine.ParameterException(new CommandLine(this), "--config: no such file: " + config);
      c = c.withFallback(ConfigFactory.parseFile(config));
    }
    return c.withFallback(ConfigFactory.load()).resolve();
  }

  @Override
  public Integer call() throws Exception {
    FlotillaNode node;
    try {
      node = FlotillaNode.start(config());
    } catch (Exception e) {
      System.err.println("flotilla node: " + e.getMessage());
      return 1;
    }
    Path tokenFile = node.dataDir().resolve(TokenAuth.DEFAULT_TOKEN_FILE);
    System.out.println("flotilla node ready: grpc=" + node.grpcAddress() + " cluster=" + node.clusterAddress()
        + " data-dir=" + node.dataDir()
        + (Files.exists(tokenFile) ? " token-file=" + tokenFile : ""));
    System.out.flush();
    node.awaitTermination();
    return 0;
  }
}
