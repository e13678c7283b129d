package dev.flotilla.chaos;

import java.util.Map;
import java.util.TreeMap;
import java.util.List;

/**
 * Samples, every 250 ms while a fault plays out, the sandboxes with more than one live VM on this
 * machine: the report's "duplicate live incarnations seen".
 */
final class DuplicateSampler implements AutoCloseable {
  private final TestCluster cluster;
  private final Thread thread;
  private volatile boolean running = true;
  private int max;
  private final Map<String, List<Long>> examples = new TreeMap<>();

  DuplicateSampler(TestCluster cluster) {
    this.cluster = cluster;
    this.thread = new Thread(this::loop, "chaos-duplicate-sampler");
    thread.setDaemon(true);
    thread.start();
  }

  private void loop() {
    while (running) {
      Map<String, List<Long>> dup = new TreeMap<>();
      cluster.local.liveAgents().forEach((id, pids) -> {
        if (pids.size() > 1) dup.put(id, pids);
      });
      synchronized (this) {
        max = Math.max(max, dup.size());
        if (examples.size() < 5) examples.putAll(dup);
      }
      try {
        Thread.sleep(250); // sampling period, not a wait for a condition
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  /** The most sandboxes seen with two live VMs at one sample. */
  synchronized int max() {
    return max;
  }

  synchronized Map<String, List<Long>> examples() {
    return new TreeMap<>(examples);
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
