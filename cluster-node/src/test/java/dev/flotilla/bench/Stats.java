package dev.flotilla.bench;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** Samples in milliseconds; nearest-rank percentiles. */
final class Stats {
  private final List<Double> xs = new ArrayList<>();

  synchronized void add(double ms) {
    xs.add(ms);
  }

  synchronized void addNanos(long nanos) {
    xs.add(nanos / 1e6);
  }

  synchronized int n() {
    return xs.size();
  }

  synchronized double p(double pct) {
    if (xs.isEmpty()) return Double.NaN;
    List<Double> s = new ArrayList<>(xs);
    Collections.sort(s);
    int idx = (int) Math.ceil(pct / 100.0 * s.size()) - 1;
    return s.get(Math.max(0, Math.min(s.size() - 1, idx)));
  }

  double median() {
    return p(50);
  }

  double p99() {
    return p(99);
  }
}
