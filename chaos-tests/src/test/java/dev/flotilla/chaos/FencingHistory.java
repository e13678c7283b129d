package dev.flotilla.chaos;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The execs of the fencing scenarios, each with the incarnation that answered it (its
 * {@code $FLOTILLA_INCARNATION}), and the one check they exist for: once an exec of incarnation
 * k has ended OK, no exec that starts later is answered by an incarnation below k. Kept small and
 * private to {@link FencingIT} on purpose (the main suite's checker is written elsewhere).
 */
final class FencingHistory {
  enum Outcome { OK, FAILED, UNKNOWN }

  /**
   * @param node the node whose API was called (1-based)
   * @param incarnation the answering VM's incarnation, -1 when it did not answer
   */
  record Exec(String sandbox, int node, long start, long end, long incarnation, Outcome outcome, String detail) {}

  /** An OK exec answered by {@code stale.incarnation()} after one of a higher incarnation had ended. */
  record Violation(Exec newer, Exec stale) {
    @Override
    public String toString() {
      return "sandbox " + stale.sandbox() + ": incarnation " + stale.incarnation() + " answered an exec through node "
          + stale.node() + " [" + stale.start() / 1_000_000 + ", " + stale.end() / 1_000_000 + "] ms after incarnation "
          + newer.incarnation() + " had answered one through node " + newer.node() + " ending at "
          + newer.end() / 1_000_000 + " ms";
    }
  }

  private final List<Exec> execs = new ArrayList<>();

  synchronized void add(Exec e) {
    execs.add(e);
  }

  synchronized List<Exec> all() {
    return List.copyOf(execs);
  }

  /** Every OK exec answered by a lower incarnation than one that had already ended OK. */
  synchronized List<Violation> violations() {
    Map<String, List<Exec>> ok = new TreeMap<>();
    for (Exec e : execs) if (e.outcome() == Outcome.OK) ok.computeIfAbsent(e.sandbox(), k -> new ArrayList<>()).add(e);
    List<Violation> out = new ArrayList<>();
    ok.forEach((id, list) -> {
      List<Exec> byEnd = new ArrayList<>(list);
      byEnd.sort(Comparator.comparingLong(Exec::end));
      // highest[i]: the exec of the highest incarnation among byEnd[0..i]
      Exec[] highest = new Exec[byEnd.size()];
      for (int i = 0; i < byEnd.size(); i++) {
        Exec e = byEnd.get(i);
        highest[i] = i > 0 && highest[i - 1].incarnation() >= e.incarnation() ? highest[i - 1] : e;
      }
      for (Exec e : list) {
        int before = lastEndingBefore(byEnd, e.start());
        if (before >= 0 && highest[before].incarnation() > e.incarnation()) out.add(new Violation(highest[before], e));
      }
    });
    return out;
  }

  /** Index of the last exec (sorted by end) that ended strictly before {@code t}, or -1. */
  private static int lastEndingBefore(List<Exec> byEnd, long t) {
    int lo = 0;
    int hi = byEnd.size() - 1;
    int found = -1;
    while (lo <= hi) {
      int mid = (lo + hi) >>> 1;
      if (byEnd.get(mid).end() < t) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}
