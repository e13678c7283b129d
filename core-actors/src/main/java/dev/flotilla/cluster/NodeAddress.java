package dev.flotilla.cluster;

import org.apache.pekko.actor.Address;

/** How the control plane names a cluster node to users and in its own records. */
public final class NodeAddress {
  private NodeAddress() {}

  /** A cluster address as users see it: host:port. */
  public static String hostPort(Address a) {
    return a.getHost().orElse("?") + ":" + a.getPort().orElse(0);
  }
}
