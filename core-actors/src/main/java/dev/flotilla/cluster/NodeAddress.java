package dev.flotilla.cluster;

import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.ClusterActorRefProvider;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;

/** How the control plane names a cluster node to users and in its own records. */
public final class NodeAddress {
  private NodeAddress() {}

  /** A cluster address as users see it: host:port. */
  public static String hostPort(Address a) {
    return a.getHost().orElse("?") + ":" + a.getPort().orElse(0);
  }

  /**
   * Whether a member on {@code hostPort} is in the cluster and running, as this node sees it:
   * joining, weakly up or up, and reachable (not leaving, exiting, down or removed). False
   * outside a cluster.
   */
  public static boolean isLiveMember(ActorSystem<?> system, String hostPort) {
    if (!(((ExtendedActorSystem) Adapter.toClassic(system)).provider() instanceof ClusterActorRefProvider)) return false;
    var state = Cluster.get(system).state();
    return isLiveMember(state.getMembers(), state.getUnreachable(), hostPort);
  }

  static boolean isLiveMember(Iterable<Member> members, java.util.Set<Member> unreachable, String hostPort) {
    for (Member m : members) {
      MemberStatus s = m.status();
      boolean running = s == MemberStatus.joining() || s == MemberStatus.weaklyUp() || s == MemberStatus.up();
      if (running && !unreachable.contains(m) && hostPort(m.address()).equals(hostPort)) return true;
    }
    return false;
  }
}
