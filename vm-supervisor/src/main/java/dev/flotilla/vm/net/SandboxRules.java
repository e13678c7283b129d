package dev.flotilla.vm.net;

import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The host rules of one sandbox incarnation, whichever driver carries its packets (pasta for a
 * process sandbox, passt for a VM): rendered from its policy by the {@link EgressHost}, installed,
 * re-applied by the host's refresh when an address of a listed name changed (or to heal a flush),
 * and removed at its end, only if they are still this incarnation's.
 */
public final class SandboxRules implements EgressHost.Member {
  private static final Logger log = LoggerFactory.getLogger(SandboxRules.class);

  private final EgressHost host;
  private final String sandboxId;
  private final long uid;
  private final String comment;
  private final EgressPolicy policy;
  private EgressRules applied;
  private boolean stopped;

  public SandboxRules(EgressHost host, String sandboxId, long uid, String comment, EgressPolicy policy) {
    this.host = host;
    this.sandboxId = sandboxId;
    this.uid = uid;
    this.comment = comment;
    this.policy = policy;
  }

  /** Resolves the lists' names and installs the rules (one atomic replace per family). */
  public synchronized void apply() throws IOException {
    if (stopped) return;
    EgressRules rules = host.render(uid, comment, policy);
    host.firewall().install(rules);
    applied = rules;
  }

  /** From now on the host's refresh re-applies them (until {@link #stop}). */
  public synchronized void refreshFromNowOn() {
    if (!stopped) host.register(this);
  }

  /** Re-applied when an address changed, or {@code heal} (someone may have flushed them); a failure keeps the last ones. */
  @Override
  public synchronized void refresh(boolean heal) {
    if (stopped) return;
    try {
      EgressRules rules = host.render(uid, comment, policy);
      if (heal || !rules.equals(applied)) {
        host.firewall().install(rules);
        applied = rules;
      }
    } catch (IOException | RuntimeException e) {
      log.warn("sandbox {}: cannot refresh its egress rules (the last ones stay): {}", sandboxId, e.getMessage());
    }
  }

  /** No more refreshes or applies; the rules stay (until {@link #remove}). */
  public synchronized void stop() {
    stopped = true;
    host.unregister(this);
  }

  /** Stops, then removes the rules if they are still this incarnation's (a sandbox keeps its uid across incarnations). */
  public synchronized void remove() {
    stop();
    try {
      host.firewall().remove(uid, comment);
    } catch (IOException e) {
      log.warn("sandbox {}: cannot remove its egress rules: {}", sandboxId, e.getMessage());
    }
  }
}
