package dev.flotilla.cli;

import dev.flotilla.node.local.LocalCluster;
import dev.flotilla.node.local.LocalNode;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code flotilla dev-cluster --nodes N}: a real embedded PostgreSQL and N local nodes sharing it,
 * until Ctrl-C. Prints, on stdout and nothing else there, one line per node
 * {@code node N grpc=HOST:PORT artery=HOST:PORT pid=PID}, then {@code token-file=PATH} (tenant
 * "default"'s token, valid on every node, in a 0600 file rather than on the screen),
 * {@code admin-token-file=PATH} (the administration identity's, for nodes and drain), {@code ca=PATH}
 * (the CA of the nodes' certificates; absent with {@code --plaintext}) and an {@code export ...}
 * line that points the CLI at node 1. Progress and errors go to stderr.
 *
 * <p>TLS by default: a fresh CA and a certificate per node (openssl, in {@code <base>/tls}), gRPC
 * over TLS and mutual TLS between the nodes, as a cluster off loopback must run.
 */
@Command(name = "dev-cluster",
    description = "Start a local cluster: an embedded PostgreSQL and N nodes, until Ctrl-C.")
final class DevClusterCommand implements Callable<Integer> {
  @Option(names = "--nodes", defaultValue = "3", description = "how many nodes (default ${DEFAULT-VALUE})")
  int nodes;

  @Option(names = "--base-dir",
      description = "directory for the nodes' data, logs and PostgreSQL (must be a short path; default: a fresh /tmp/flc*)")
  Path baseDir;

  @Option(names = "--keep", description = "keep the base directory (data and logs) after exit")
  boolean keep;

  @Option(names = "--plaintext", description = "no TLS: plaintext gRPC and Artery (loopback only)")
  boolean plaintext;

  @ParentCommand Cli cli;

  @Override
  public Integer call() throws IOException, InterruptedException {
    if (nodes < 1 || nodes > 15) throw new CliFailure(ExitCodes.USAGE, "--nodes must be between 1 and 15, is " + nodes);
    PrintStream out = cli.context().out();
    PrintStream err = cli.context().err();
    err.println("flotilla dev-cluster: starting PostgreSQL and " + nodes + " node(s)…");
    LocalCluster cluster;
    try {
      cluster = LocalCluster.builder().nodes(nodes).baseDir(baseDir).deleteOnClose(!keep).tls(!plaintext).start();
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "the cluster did not start: " + e.getMessage());
    }
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      err.println("flotilla dev-cluster: stopping…");
      cluster.close();
      err.println("flotilla dev-cluster: stopped");
      stopped.countDown();
    }, "dev-cluster-stop"));
    for (LocalNode n : cluster.nodes()) {
      out.println("node " + n.index() + " grpc=" + n.grpcAddress() + " artery=" + n.arteryAddress() + " pid=" + n.pid());
    }
    out.println("token-file=" + cluster.tokenFile());
    out.println("admin-token-file=" + cluster.adminTokenFile());
    if (cluster.tls()) out.println("ca=" + cluster.caCert());
    out.println("export FLOTILLA_ENDPOINT=" + cluster.node(1).grpcAddress() + " FLOTILLA_TOKEN_FILE=" + cluster.tokenFile()
        + (cluster.tls() ? " FLOTILLA_TLS=1 FLOTILLA_CA=" + cluster.caCert() : ""));
    out.flush();
    err.println("flotilla dev-cluster: " + (cluster.tls()
        ? "gRPC over TLS and mutual TLS between the nodes (certificates in " + cluster.baseDir().resolve("tls") + ");"
          + " run the export line above, then e.g. `./flotilla create`, or pass --tls --ca " + cluster.caCert()
          + " --token-file " + cluster.tokenFile() + " --endpoint HOST:PORT; the administration commands take the"
          + " admin token: `./flotilla nodes --token-file " + cluster.adminTokenFile() + "`"
        : "plaintext; run the export line above, then e.g. `./flotilla create`; the administration commands take the"
          + " admin token: `./flotilla nodes --token-file " + cluster.adminTokenFile() + "`"));
    err.println("flotilla dev-cluster: data and logs in " + cluster.baseDir() + (keep ? " (kept)" : " (removed on exit)")
        + "; Ctrl-C stops everything");
    stopped.await();
    return ExitCodes.OK;
  }
}
