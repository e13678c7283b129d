package dev.flotilla.node;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.apache.pekko.Done;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps a sandbox from running twice when its node is cut off. When the split brain resolver
 * downs this node, the majority restarts its sandboxes elsewhere after the down-removal margin;
 * before that, this node kills every VM it runs (first phase of coordinated shutdown).
 */
final class NodeFencing {
  private static final Logger log = LoggerFactory.getLogger(NodeFencing.class);

  private NodeFencing() {}

  static void install(ActorSystem<?> system, Map<String, Hypervisor> drivers, Path vmRoot) {
    CoordinatedShutdown cs = CoordinatedShutdown.get(system);
    cs.addTask(CoordinatedShutdown.PhaseBeforeServiceUnbind(), "flotilla-fence-vms", () -> {
      if (cs.getShutdownReason().filter(r -> r == CoordinatedShutdown.clusterDowningReason()).isPresent()) {
        int n = killAll(drivers, vmRoot);
        log.warn("this node was downed by the cluster: killed its {} VMs so their sandboxes can start elsewhere", n);
      }
      return CompletableFuture.completedFuture(Done.getInstance());
    });
  }

  static int killAll(Map<String, Hypervisor> drivers, Path vmRoot) {
    int n = 0;
    for (VmHandle h : new VmDirectory(vmRoot).handles()) {
      Hypervisor hv = drivers.get(h.driver());
      if (hv == null) continue;
      var vm = hv.adopt(h);
      if (vm.isPresent()) {
        vm.get().kill();
        n++;
      }
    }
    return n;
  }

  /** True when another Up member can take over this node's sandboxes. */
  static boolean othersCanTakeOver(ActorSystem<?> system) {
    Cluster cluster = Cluster.get(system);
    for (var m : cluster.state().getMembers()) {
      if (!m.equals(cluster.selfMember()) && m.status() == MemberStatus.up()) return true;
    }
    return false;
  }
}
