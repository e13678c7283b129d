package dev.flotilla.chaos;

import dev.flotilla.node.local.LocalCluster;
import dev.flotilla.node.local.LocalNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * While a fault plays out, samples (every 100 ms) every live guest agent of the cluster (its
 * sandbox, incarnation and node: {@link LocalCluster#liveVms()}) and whether each node JVM is alive: when
 * each VM was first and last seen alive, and when each node exited. What it answers: did a
 * sandbox's old VM end before its new incarnation started (and by how much)?
 */
final class VmTimeline implements AutoCloseable {
  /** One VM (agent JVM) as seen: ms after the start of the timeline. */
  record Vm(String sandbox, long incarnation, String node, long pid, long firstSeen, long lastSeen) {}

  private final LocalCluster local;
  private final long t0 = System.nanoTime();
  private final Map<Long, Vm> vms = new ConcurrentHashMap<>();
  private final Map<Integer, Long> nodeExits = new ConcurrentHashMap<>();
  private final Thread thread;
  private volatile boolean running = true;

  VmTimeline(LocalCluster local) {
    this.local = local;
    sample();
    this.thread = new Thread(this::loop, "chaos-vm-timeline");
    thread.setDaemon(true);
    thread.start();
  }

  /** ms since this timeline started. */
  long now() {
    return (System.nanoTime() - t0) / 1_000_000;
  }

  private void loop() {
    while (running) {
      sample();
      try {
        Thread.sleep(100); // sampling period, not a wait for a condition
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  private void sample() {
    long at = now();
    for (LocalCluster.LiveVm v : local.liveVms()) {
      vms.compute(v.pid(), (k, old) -> old != null ? new Vm(old.sandbox(), old.incarnation(), old.node(), old.pid(), old.firstSeen(), at)
          : new Vm(v.sandboxId(), v.incarnation(), "n" + v.node(), v.pid(), at, at));
    }
    for (LocalNode n : local.nodes()) {
      if (!n.isAlive()) nodeExits.putIfAbsent(n.index(), at);
      else nodeExits.remove(n.index()); // restarted
    }
  }

  /** When node {@code i} was first seen exited (ms), or -1 while it runs. */
  long nodeExit(int i) {
    return nodeExits.getOrDefault(i, -1L);
  }

  /** The VMs seen of each sandbox, oldest first. */
  Map<String, List<Vm>> bySandbox() {
    Map<String, List<Vm>> out = new TreeMap<>();
    for (Vm v : vms.values()) out.computeIfAbsent(v.sandbox(), k -> new ArrayList<>()).add(v);
    out.values().forEach(l -> l.sort(java.util.Comparator.comparingLong(Vm::firstSeen).thenComparingLong(Vm::incarnation)));
    return out;
  }

  /**
   * Per sandbox that got a new VM during the timeline: the gap (ms) between the last sample that saw
   * the old VM and the first that saw its successor; negative means both were seen alive together.
   */
  Map<String, Long> handOverGaps() {
    Map<String, Long> out = new TreeMap<>();
    bySandbox().forEach((id, list) -> {
      for (int k = 1; k < list.size(); k++) {
        Vm before = list.get(k - 1);
        Vm after = list.get(k);
        if (after.firstSeen() == 0) continue; // both there at the start: not a hand-over of this fault
        out.merge(id, after.firstSeen() - before.lastSeen(), Math::min);
      }
    });
    return out;
  }

  @Override
  public void close() {
    running = false;
    thread.interrupt();
    try {
      thread.join(5000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
