package dev.flotilla.cli;

import dev.flotilla.api.v1.DrainNodeRequest;
import dev.flotilla.api.v1.ListNodesRequest;
import dev.flotilla.api.v1.Node;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/**
 * nodes, drain: the cluster administration commands. They need an admin tenant's token; without
 * one given they use the node's {@code <data dir>/admin.token}.
 */
final class ClusterCommands {
  private ClusterCommands() {}

  /** The administration commands' token, when none is given. */
  abstract static class AdminCommand extends TimedCommand {
    @Override
    String ownTokenFile() {
      return ClientOptions.ADMIN_TOKEN_FILE;
    }
  }

  static String line(Node n) {
    return String.format("%-22s %-8s %-11s %d", n.getAddress(), n.getStatus(),
        n.getReachable() ? "reachable" : "UNREACHABLE", n.getSandboxes());
  }

  @Command(name = "nodes", mixinStandardHelpOptions = true,
      description = "List the cluster's nodes: address, status, reachability, sandboxes running there.")
  static final class Nodes extends AdminCommand {
    @Override
    int run(FlotillaClient client, CliContext ctx) {
      var nodes = client.call(ClusterServiceMethods.LIST_NODES, ListNodesRequest.getDefaultInstance(), null);
      ctx.out().println(String.format("%-22s %-8s %-11s %s", "NODE", "STATUS", "REACHABLE", "SANDBOXES"));
      for (Node n : nodes.getNodesList()) ctx.out().println(line(n));
      return ExitCodes.OK;
    }
  }

  @Command(name = "drain", mixinStandardHelpOptions = true,
      description = "Move every sandbox off a node: it leaves the cluster, each of its sandboxes restarts "
          + "(incarnation + 1) on the least-loaded remaining nodes, then the node's process exits.")
  static final class Drain extends AdminCommand {
    @Parameters(index = "0", paramLabel = "NODE", description = "The node's cluster address host:port (see `flotilla nodes`).")
    String address;

    @Override
    int run(FlotillaClient client, CliContext ctx) {
      var r = client.call(ClusterServiceMethods.DRAIN_NODE, DrainNodeRequest.newBuilder().setAddress(address).build(), null);
      ctx.out().println("draining " + r.getNode().getAddress() + " (" + r.getNode().getSandboxes() + " sandboxes)");
      return ExitCodes.OK;
    }
  }
}
