package dev.flotilla.cli;

import dev.flotilla.api.v1.HistoryEvent;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/** Human-readable output: the {@code ls} table, {@code get}'s details, {@code watch}'s lines. */
public final class SandboxText {
  static final String[] COLUMNS = {"ID", "PHASE", "INCARNATION", "NODE", "LABELS", "AGE"};

  private SandboxText() {}

  /** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
  public static String table(List<Sandbox> sandboxes, Instant now) {
    List<String[]> rows = new ArrayList<>();
    rows.add(COLUMNS);
    for (Sandbox s : sandboxes) {
      rows.add(new String[] {
          Names.oneLine(s.getId()), Names.phase(s), Long.toUnsignedString(s.getIncarnation()),
          s.getNode().isEmpty() ? "-" : Names.oneLine(s.getNode()), Names.labels(s.getSpec().getLabelsMap()),
          s.hasCreatedAt() ? age(Names.instant(s.getCreatedAt()), now) : "-"});
    }
    return columns(rows);
  }

  /** Rows (the first: headings) as columns padded to their widest cell, two spaces apart; the last column is not padded. */
  static String columns(List<String[]> rows) {
    int[] widths = new int[rows.get(0).length];
    for (String[] row : rows) {
      for (int i = 0; i < row.length; i++) widths[i] = Math.max(widths[i], row[i].length());
    }
    StringBuilder b = new StringBuilder();
    for (String[] row : rows) {
      for (int i = 0; i < row.length; i++) {
        b.append(row[i]);
        if (i + 1 < row.length) b.append(" ".repeat(widths[i] - row[i].length() + 2));
      }
      b.append('\n');
    }
    return b.toString();
  }

  public static String details(Sandbox s, Instant now) {
    SandboxSpec spec = s.getSpec();
    StringBuilder b = new StringBuilder();
    line(b, "ID", s.getId());
    line(b, "Tenant", s.getTenant());
    line(b, "Phase", Names.phase(s));
    line(b, "Status", s.getStatusMessage().isEmpty() ? "-" : Names.oneLine(s.getStatusMessage()));
    line(b, "Desired", s.getDesiredRunning() ? "running" : "stopped");
    line(b, "Incarnation", Long.toUnsignedString(s.getIncarnation()));
    line(b, "Restarts", Integer.toUnsignedString(s.getRestartCount()));
    line(b, "Node", s.getNode().isEmpty() ? "-" : s.getNode());
    line(b, "Driver", spec.getDriver().isEmpty() ? "-" : spec.getDriver());
    line(b, "vCPUs", spec.getVcpus() == 0 ? "-" : Integer.toString(spec.getVcpus()));
    line(b, "Memory", spec.getMemoryMib() == 0 ? "-" : spec.getMemoryMib() + " MiB");
    line(b, "Disk", spec.getDiskMib() == 0 ? "-" : spec.getDiskMib() + " MiB");
    line(b, "Image", spec.getImage().isEmpty() ? "(default)" : spec.getImage());
    line(b, "Command", spec.getCommandCount() == 0 ? "(none: waits for execs)" : Names.argv(spec.getCommandList()));
    line(b, "Restart", Names.restartPolicyForPeople(spec));
    line(b, "Labels", Names.labels(spec.getLabelsMap()));
    line(b, "Created", s.hasCreatedAt() ? Names.rfc3339Millis(s.getCreatedAt()) + " ("
        + age(Names.instant(s.getCreatedAt()), now) + " ago)" : "-");
    line(b, "Updated", s.hasUpdatedAt() ? Names.rfc3339Millis(s.getUpdatedAt()) + " ("
        + age(Names.instant(s.getUpdatedAt()), now) + " ago)" : "-");
    line(b, "Expires", !s.hasExpiresAt() ? "never" : Names.rfc3339Millis(s.getExpiresAt())
        + (Names.instant(s.getExpiresAt()).isAfter(now) ? " (in " + age(now, Names.instant(s.getExpiresAt())) + ")" : " (due)")
        + ", then " + (spec.getOnTimeout() == dev.flotilla.api.v1.TimeoutAction.TIMEOUT_STOP ? "stopped" : "deleted"));
    if (spec.hasIdleTimeout() && (spec.getIdleTimeout().getSeconds() > 0 || spec.getIdleTimeout().getNanos() > 0)) {
      line(b, "Idle timeout", Durations.format(java.time.Duration.ofSeconds(spec.getIdleTimeout().getSeconds(),
          spec.getIdleTimeout().getNanos())) + ", then " + (spec.getOnIdle() == dev.flotilla.api.v1.IdleAction.IDLE_PAUSE ? "paused"
          : spec.getOnIdle() == dev.flotilla.api.v1.IdleAction.IDLE_SUSPEND ? "suspended" : "stopped"));
    }
    return b.toString();
  }

  /** time, event, phase, incarnation, message: one line per event, fields separated by spaces. */
  public static String watchLine(SandboxEvent e) {
    Sandbox s = e.getSandbox();
    String at = e.hasAt() ? Names.rfc3339Millis(e.getAt()) : "-";
    String msg = Names.oneLine(s.getStatusMessage());
    return String.format("%-24s  %-10s %-9s %3s  %s", at, e.getEvent().isEmpty() ? "-" : e.getEvent(),
        Names.phase(s), Long.toUnsignedString(s.getIncarnation()), msg).stripTrailing() + "\n";
  }

  /** One line of {@code flotilla events}: time, incarnation, kind, description. */
  public static String historyLine(HistoryEvent e) {
    String at = e.hasAt() ? Names.rfc3339Millis(e.getAt()) : "-";
    return String.format("%-24s  %3s  %-16s %s", at, e.getIncarnation() == 0 ? "-" : Long.toString(e.getIncarnation()),
        Names.oneLine(e.getKind()), Names.oneLine(e.getDescription())).stripTrailing() + "\n";
  }

  static String age(Instant since, Instant now) {
    return Durations.format(Duration.between(since, now).withNanos(0));
  }

  private static void line(StringBuilder b, String name, String value) {
    b.append(name).append(':').append(" ".repeat(13 - name.length())).append(value).append('\n');
  }
}
