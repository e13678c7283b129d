package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Executor;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Host names of one sandbox's lists matched at connection time, for any driver whose sandbox
 * traffic leaves the node under the sandbox's own uid (pasta, passt): its {@link DnsProxy}, its
 * {@link NameSets} and the redirect of its DNS to the proxy. Its {@link #nameMatch()} goes into
 * the sandbox's {@link EgressRules}.
 *
 * <p>Order: {@link #start} (the sets, which the filter rules match, and the proxy), then the
 * filter rules, then {@link #installRedirect}; at the end {@link #close()} (the proxy), the filter
 * rules removed, then {@link #remove(long)} (the redirect and the sets).
 */
public final class SandboxDns implements AutoCloseable {
  private static final AtomicLong WORKER = new AtomicLong();
  /**
   * Grants (a host command each) and DNS-over-TCP connections of every proxy in this JVM (UDP
   * queries wait for upstream on each proxy's selector, holding no thread). Each proxy bounds its
   * own share ({@link DnsProxy.Limits}); the pool bounds the threads of them all.
   */
  private static final ThreadPoolExecutor WORKERS = new ThreadPoolExecutor(0, 1024, 30, TimeUnit.SECONDS, new SynchronousQueue<>(), r -> {
    Thread t = new Thread(r, "flotilla-dns-worker-" + WORKER.incrementAndGet());
    t.setDaemon(true);
    return t;
  });

  private final long uid;
  private final NameSets sets;
  private final DnsProxy proxy;

  private SandboxDns(long uid, NameSets sets, DnsProxy proxy) {
    this.uid = uid;
    this.sets = sets;
    this.proxy = proxy;
  }

  /**
   * Creates the sandbox's sets (emptied if {@code fresh}: a new incarnation; kept otherwise: a
   * node adopting the sandbox keeps what its lookups granted) and starts its proxy.
   *
   * @param upstream the node's resolvers (port 53)
   */
  public static SandboxDns start(String label, long uid, EgressPolicy policy, List<InetAddress> upstream, DnsProxy.Limits limits,
      boolean fresh) throws IOException {
    return start(label, uid, policy, upstream.stream().map(a -> new InetSocketAddress(a, 53)).toList(), limits, fresh, WORKERS);
  }

  static SandboxDns start(String label, long uid, EgressPolicy policy, List<InetSocketAddress> upstream, DnsProxy.Limits limits,
      boolean fresh, Executor workers) throws IOException {
    NameSets sets = new NameSets(uid);
    sets.create(fresh, limits.maxGrants());
    NameGrants grants = new NameGrants(sets, limits.minTtl(), limits.maxTtl(), limits.maxGrants(), limits.setUpdatesPerSecond(),
        () -> System.nanoTime() / 1_000_000);
    DnsProxy proxy = DnsProxy.start(label, DnsProxy.Senders.ownedBy(uid), names(policy.allow()), names(policy.deny()), upstream,
        grants, limits, workers);
    return new SandboxDns(uid, sets, proxy);
  }

  private static Set<String> names(List<EgressPolicy.Destination> list) {
    Set<String> out = new HashSet<>();
    for (EgressPolicy.Destination d : list) if (d instanceof EgressPolicy.Host h) out.add(h.name());
    return out;
  }

  /** What the filter rules need to let the sandbox's DNS reach its proxy only and to match its sets. */
  public EgressRules.NameMatch nameMatch() {
    return new EgressRules.NameMatch(proxy.port(), proxy.ipv6());
  }

  /** Redirects the uid's DNS to the proxy (after the filter rules are in: they let its port through). */
  public void installRedirect(String comment) throws IOException {
    sets.installRedirect(comment, proxy.port(), proxy.ipv6());
  }

  /** Creates the sets again if someone destroyed them (before the filter rules are installed again). */
  public void heal() throws IOException {
    sets.create(false, proxy.limits().maxGrants());
  }

  public long uid() {
    return uid;
  }

  /** Stops the proxy (the sandbox's DNS gets no answer until the redirect goes too). */
  @Override
  public void close() {
    proxy.close();
  }

  /** Removes the uid's redirect and sets; only once its filter rules, which match the sets, are gone. */
  public static void remove(long uid) throws IOException {
    new NameSets(uid).remove();
  }
}
