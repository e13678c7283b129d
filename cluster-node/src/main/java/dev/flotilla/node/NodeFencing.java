package dev.flotilla.node;

import com.typesafe.config.Config;
import dev.flotilla.cluster.FlotillaDowningProvider;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
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
        closeGates(drivers);
        int n = killAll(drivers, vmRoot);
        log.warn("this node was downed by the cluster: killed its {} VMs so their sandboxes can start elsewhere", n);
      }
      return CompletableFuture.completedFuture(Done.getInstance());
    });
  }

  /**
   * Watches this JVM for a freeze longer than {@code limit} (the earliest takeover less the lease
   * margin). A node thawed after one may have been downed, its sandboxes started elsewhere, and it
   * does not know yet: ChaosIT's SIGSTOP saw a thawed node spawn a VM its entity had asked for
   * before the freeze, beside that sandbox's new incarnation, until the node learned of its downing
   * 6 s later. So its drivers spawn nothing while the watch is not fresh, and a node that sees the
   * freeze fences itself at once, as a downed one does: no more spawns, every VM killed, then it
   * downs itself and stops (start it again: it rejoins as a new member). A node no other Up member
   * could take over from carries on.
   */
  static dev.flotilla.vm.FreezeWatch watchFreezes(ActorSystem<?> system, Map<String, Hypervisor> drivers, Path vmRoot,
      Duration limit) {
    dev.flotilla.vm.FreezeWatch watch = dev.flotilla.vm.FreezeWatch.start(limit, gap -> {
      if (!othersCanTakeOver(system)) {
        log.warn("this node was frozen for {} ms (more than {} ms), but no other node could have taken its sandboxes over:"
            + " it carries on", gap.toMillis(), limit.toMillis());
        return false;
      }
      log.error("this node was frozen for {} ms, more than the {} ms after which its cluster may have downed it and"
          + " started its sandboxes elsewhere: it fences itself (starts no VM, kills its VMs) and leaves the cluster;"
          + " start it again to rejoin", gap.toMillis(), limit.toMillis());
      closeGates(drivers);
      int n = killAll(drivers, vmRoot);
      log.warn("fencing after a freeze: killed {} VMs; downing this node", n);
      Cluster cluster = Cluster.get(system);
      cluster.manager().tell(new org.apache.pekko.cluster.typed.Down(cluster.selfMember().address()));
      return true;
    });
    drivers.values().forEach(hv -> hv.watchFreezes(watch));
    system.getWhenTerminated().whenComplete((d, e) -> watch.close());
    return watch;
  }

  /**
   * No VM starts here once the node is downed, and every VM that started has a handle for
   * {@link #killAll}: a start in flight when the node was frozen would otherwise spawn its VM after
   * the handles were listed, and it ran beside its successor until its lease ended.
   */
  static void closeGates(Map<String, Hypervisor> drivers) {
    for (Hypervisor hv : drivers.values()) {
      if (!hv.fence(SPAWN_WAIT)) {
        log.warn("fencing: a {} VM was still being spawned after {} ms; it may outlive this node until its lease ends",
            hv.driver(), SPAWN_WAIT.toMillis());
      }
    }
  }

  /** A spawn is a fork and a handle write: long enough for a busy host, short next to the margin. */
  static final Duration SPAWN_WAIT = Duration.ofSeconds(2);

  static int killAll(Map<String, Hypervisor> drivers, Path vmRoot) {
    return kill(new VmDirectory(vmRoot).handles(), drivers);
  }

  /**
   * Kills the VMs of {@code handles} in parallel: the majority starts their sandboxes elsewhere
   * after the down-removal margin (3 s), and one by one (adopt and kill each: runc calls) 27 VMs
   * took 10 s on two busy cores in PartitionIT, so the last ones ran beside their new incarnations.
   */
  static int kill(List<VmHandle> handles, Map<String, Hypervisor> drivers) {
    if (handles.isEmpty()) return 0;
    java.util.concurrent.atomic.AtomicInteger killed = new java.util.concurrent.atomic.AtomicInteger();
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(
        Math.min(FENCING_THREADS, handles.size()), r -> {
          Thread t = new Thread(r, "flotilla-fence");
          t.setDaemon(true);
          return t;
        });
    try {
      List<CompletableFuture<Void>> all = new java.util.ArrayList<>();
      for (VmHandle h : handles) {
        Hypervisor hv = drivers.get(h.driver());
        if (hv == null) continue;
        all.add(CompletableFuture.runAsync(() -> {
          try {
            var vm = hv.adopt(h);
            if (vm.isPresent()) {
              vm.get().kill();
              killed.incrementAndGet();
            }
          } catch (RuntimeException e) {
            log.warn("fencing: cannot kill the VM of {} incarnation {}: {}", h.sandboxId(), h.incarnation(), e.toString());
          }
        }, pool));
      }
      CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).get(FENCING_TIMEOUT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.TimeoutException | java.util.concurrent.ExecutionException e) {
      log.warn("fencing: not every VM was killed within {} ms: {}", FENCING_TIMEOUT.toMillis(), e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      pool.shutdown();
    }
    return killed.get();
  }

  static final int FENCING_THREADS = 16;
  static final Duration FENCING_TIMEOUT = Duration.ofSeconds(30);

  /**
   * The guest agent's lease must run out before the rest of the cluster can restart a frozen
   * node's sandboxes elsewhere: that takes at least the failure detector's acceptable pause, the
   * split brain resolver's stable-after and the down-removal margin (measured from the node's last
   * heartbeat). A lease that does not end {@link #LEASE_MARGIN} before that would let a SIGSTOPped
   * node's VMs run beside their new incarnations, so such a node refuses to start. Likewise the
   * lease must end within the placement's rejoin grace (a restarted node's shards wait that long
   * for it before they go elsewhere).
   *
   * @return the earliest takeover, for the log
   */
  static Duration checkLease(Config config, Duration lease) {
    var cluster = config.getConfig("pekko.cluster");
    Duration takeover = cluster.getDuration("failure-detector.acceptable-heartbeat-pause")
        .plus(cluster.getDuration("split-brain-resolver.stable-after"))
        .plus(FlotillaDowningProvider.removalMargin(config));
    if (!lease.isZero() && lease.plus(LEASE_MARGIN).compareTo(takeover) > 0) {
      throw new IllegalStateException("flotilla.vm.supervisor.lease = " + lease.toMillis() + " ms must end at least "
          + LEASE_MARGIN.toMillis() + " ms before the cluster can restart a frozen node's sandboxes elsewhere (acceptable-"
          + "heartbeat-pause + stable-after + down-removal-margin = " + takeover.toMillis() + " ms), or they would run"
          + " twice: lower the lease or raise pekko.cluster.split-brain-resolver.stable-after");
    }
    // A shard whose node's JVM was restarted waits for it up to the rejoin grace (counted from
    // after the old JVM died), then goes elsewhere while that node's VMs may still run: only their
    // lease ends them, and it must have ended by then.
    Duration rejoinGrace = config.getDuration("flotilla.sandbox.placement.rejoin-grace");
    if (!lease.isZero() && !rejoinGrace.isZero() && lease.plus(LEASE_MARGIN).compareTo(rejoinGrace) > 0) {
      throw new IllegalStateException("flotilla.sandbox.placement.rejoin-grace = " + rejoinGrace.toMillis() + " ms must be"
          + " at least flotilla.vm.supervisor.lease = " + lease.toMillis() + " ms + " + LEASE_MARGIN.toMillis() + " ms: a"
          + " restarted node's sandboxes would otherwise start elsewhere while their VMs still run on it; raise the rejoin"
          + " grace or lower the lease");
    }
    // A node frozen inside a journal transaction holds its row locks until PostgreSQL ends the
    // idle session: the new owner of its sandboxes writes once the takeover is through, and must
    // not find them still locked (its inserts would block, then the stale write commit first).
    String idle = "flotilla.persistence.idle-in-transaction-timeout";
    if (config.hasPath(idle)) {
      Duration timeout = config.getDuration(idle);
      if (!timeout.isZero() && timeout.plus(LEASE_MARGIN).compareTo(takeover) > 0) {
        throw new IllegalStateException(idle + " = " + timeout.toMillis() + " ms must end at least " + LEASE_MARGIN.toMillis()
            + " ms before the cluster can restart a frozen node's sandboxes elsewhere (" + takeover.toMillis() + " ms), or their"
            + " new owner finds the frozen node's journal rows still locked: lower it or raise"
            + " pekko.cluster.split-brain-resolver.stable-after");
      }
    }
    return takeover;
  }

  /** Time a frozen node's VMs need to notice the lease is gone and end (watchdog tick, kill, clock slack). */
  static final Duration LEASE_MARGIN = Duration.ofSeconds(1);

  /** True when another Up member can take over this node's sandboxes. */
  static boolean othersCanTakeOver(ActorSystem<?> system) {
    Cluster cluster = Cluster.get(system);
    for (var m : cluster.state().getMembers()) {
      if (!m.equals(cluster.selfMember()) && m.status() == MemberStatus.up()) return true;
    }
    return false;
  }
}
