package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.InetAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * The addresses one sandbox's lookups of list names put in its allow and deny sets, each with its
 * expiry: the node's bookkeeping beside the kernel's sets, whose entries expire on their own
 * ({@link Sets#add} gives each its timeout). It bounds the TTL (a TTL of 0 or 1 s would expire
 * before the sandbox connects; a week-long one would outlive the name's move), bounds the entries
 * (the sandbox chooses how many distinct answers it asks for), and skips the set update when an
 * address still has at least half the new TTL to go, so a sandbox that asks again and again costs
 * no host command per answer. Set updates (a host command each) are also limited in rate: a
 * sandbox asking for names whose answers rotate (CDNs) as fast as its query rate allows would
 * otherwise make the node run one per query.
 */
public final class NameGrants {
  /** Where grants take effect: the sandbox's sets in the host's firewall. */
  public interface Sets {
    /** Adds (or refreshes) {@code addresses} in the allow or deny set, each expiring after {@code ttlSeconds}. */
    void add(boolean deny, List<InetAddress> addresses, long ttlSeconds) throws IOException;
  }

  private final Sets sets;
  private final long minTtl;
  private final long maxTtl;
  private final int maxEntries;
  private final LongSupplier clockMillis;
  private final Map<InetAddress, Long> allow = new HashMap<>();
  private final Map<InetAddress, Long> deny = new HashMap<>();
  private final int updatesPerSecond;
  private double updates;
  private long updatesAt;

  /**
   * @param maxEntries per list; an answer that would need more is refused ({@link #grant} throws)
   * @param updatesPerSecond set updates per second (bursts of twice that); more are refused
   * @param clockMillis a monotonic clock in milliseconds
   */
  public NameGrants(Sets sets, Duration minTtl, Duration maxTtl, int maxEntries, int updatesPerSecond, LongSupplier clockMillis) {
    if (minTtl.toSeconds() < 1 || maxTtl.compareTo(minTtl) < 0) throw new IllegalArgumentException("need 1 s <= minTtl <= maxTtl");
    if (maxEntries < 1 || updatesPerSecond < 1) throw new IllegalArgumentException("maxEntries and updatesPerSecond must be positive");
    this.sets = sets;
    this.minTtl = minTtl.toSeconds();
    this.maxTtl = maxTtl.toSeconds();
    this.maxEntries = maxEntries;
    this.updatesPerSecond = updatesPerSecond;
    this.clockMillis = clockMillis;
    this.updates = 2.0 * updatesPerSecond;
    this.updatesAt = clockMillis.getAsLong();
  }

  /** {@code ttlSeconds} bounded to [minTtl, maxTtl]. */
  public long boundedTtl(long ttlSeconds) {
    return Math.max(minTtl, Math.min(maxTtl, ttlSeconds));
  }

  /**
   * Puts {@code addresses} in the allow (or deny) set for the answer's TTL, bounded; returns
   * before the sandbox gets the answer, so its connection finds them there.
   *
   * @return the TTL applied
   * @throws IOException if the set could not be updated or the list is full: the answer must not
   *     be given (a deny that did not take would let the address through an allowed CIDR)
   */
  public synchronized long grant(boolean denied, List<InetAddress> addresses, long ttlSeconds) throws IOException {
    long ttl = boundedTtl(ttlSeconds);
    Map<InetAddress, Long> granted = denied ? deny : allow;
    long now = clockMillis.getAsLong();
    List<InetAddress> fresh = new ArrayList<>();
    int added = 0;
    for (InetAddress a : addresses) {
      Long until = granted.get(a);
      if (until != null && until > now && until - now >= ttl * 1000 / 2) continue;
      if (fresh.contains(a)) continue;
      fresh.add(a);
      if (until == null || until <= now) added++;
    }
    if (fresh.isEmpty()) return ttl;
    if (granted.size() + added > maxEntries) {
      granted.values().removeIf(until -> until <= now);
      added = (int) fresh.stream().filter(a -> !granted.containsKey(a)).count();
      if (granted.size() + added > maxEntries) {
        throw new IOException((denied ? "deny" : "allow") + " set full: " + granted.size() + " live addresses (at most " + maxEntries + ")");
      }
    }
    updates = Math.min(2.0 * updatesPerSecond, updates + (now - updatesAt) / 1000.0 * updatesPerSecond);
    updatesAt = now;
    if (updates < 1) throw new IOException("more than " + updatesPerSecond + " set updates per second");
    updates -= 1;
    sets.add(denied, fresh, ttl);
    for (InetAddress a : fresh) granted.put(a, now + ttl * 1000);
    return ttl;
  }

  /** Live grants of one list: address to expiry (the clock's milliseconds). */
  public synchronized Map<InetAddress, Long> granted(boolean denied) {
    long now = clockMillis.getAsLong();
    Map<InetAddress, Long> out = new HashMap<>();
    (denied ? deny : allow).forEach((a, until) -> {
      if (until > now) out.put(a, until);
    });
    return out;
  }
}
