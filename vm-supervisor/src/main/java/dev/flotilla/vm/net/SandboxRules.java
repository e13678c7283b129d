package dev.flotilla.vm.net;

import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The host side of one sandbox incarnation's egress, whichever driver carries its packets (pasta
 * for a process sandbox, passt for a VM): its filter rules, rendered from its policy by the
 * {@link EgressHost}, and its DNS proxy with its sets and the redirect of its uid's DNS to it
 * ({@link SandboxDns}: host names matched at connection time). Installed before the sandbox's
 * network runs, re-applied by the host's refresh when an address of a denied name changed (or to
 * heal a flush), started again by a node that adopts the sandbox, and removed at its end, only if
 * they are still this incarnation's.
 *
 * <p>Order ({@link SandboxDns}'s): the sets and the proxy, then the filter rules (which match the
 * sets and let the proxy's port through), then the redirect; at the end the proxy, the filter
 * rules, then the redirect and the sets.
 */
public final class SandboxRules implements EgressHost.Member {
  private static final Logger log = LoggerFactory.getLogger(SandboxRules.class);

  private final EgressHost host;
  private final String sandboxId;
  private final long uid;
  private final String comment;
  private final EgressPolicy policy;
  private EgressRules applied;
  private SandboxDns dns;
  private boolean stopped;

  public SandboxRules(EgressHost host, String sandboxId, long uid, String comment, EgressPolicy policy) {
    this.host = host;
    this.sandboxId = sandboxId;
    this.uid = uid;
    this.comment = comment;
    this.policy = policy;
  }

  /**
   * Starts the DNS proxy if this node has none for the incarnation, resolves the deny list's names
   * and installs the rules (one atomic replace per family), then the DNS redirect.
   *
   * @param fresh a new incarnation: its sets start empty; otherwise (a node adopting the sandbox)
   *     they keep what its lookups granted
   */
  public synchronized void apply(boolean fresh) throws IOException {
    if (stopped) return;
    if (dns == null) dns = SandboxDns.start(sandboxId, uid, policy, host.dnsServers(), host.dnsLimits(), fresh);
    EgressRules rules = host.render(uid, comment, policy, dns.nameMatch());
    host.firewall().install(rules);
    dns.installRedirect(comment);
    applied = rules;
  }

  /**
   * A node adopting the sandbox (its sandbox or VM still runs): a new DNS proxy of this node (the
   * sets keep their grants), the rules and the redirect to it applied again, refreshed from now on.
   */
  public void adopt() throws IOException {
    apply(false);
    refreshFromNowOn();
  }

  /** How host names are matched: at connection time through this incarnation's DNS proxy (null before it runs). */
  public synchronized EgressRules.NameMatch nameMatch() {
    return dns == null ? null : dns.nameMatch();
  }

  /** The rules last installed (null before). */
  public synchronized EgressRules applied() {
    return applied;
  }

  /** From now on the host's refresh re-applies them (until {@link #stop}). */
  public synchronized void refreshFromNowOn() {
    if (!stopped) host.register(this);
  }

  /**
   * Re-applied when an address changed, or {@code heal} (someone may have flushed them: the sets
   * are created again, the redirect put back); a failure keeps the last ones.
   */
  @Override
  public synchronized void refresh(boolean heal) {
    if (stopped) return;
    try {
      EgressRules rules = host.render(uid, comment, policy, dns == null ? null : dns.nameMatch());
      if (heal || !rules.equals(applied)) {
        if (heal && dns != null) dns.heal();
        host.firewall().install(rules);
        if (dns != null) dns.installRedirect(comment);
        applied = rules;
      }
    } catch (IOException | RuntimeException e) {
      log.warn("sandbox {}: cannot refresh its egress rules (the last ones stay): {}", sandboxId, e.getMessage());
    }
  }

  /** No more refreshes or applies; the rules, the proxy and the redirect stay (until {@link #remove}). */
  public synchronized void stop() {
    stopped = true;
    host.unregister(this);
  }

  /**
   * Stops, then ends the proxy, removes the filter rules if they are still this incarnation's (a
   * sandbox keeps its uid across incarnations) and then, only if so, the uid's redirect and sets
   * (which those rules matched). Call it once nothing carries the sandbox's packets any more.
   */
  public synchronized void remove() {
    stop();
    SandboxDns d = dns;
    if (d != null) d.close();
    boolean ours = true; // a failure after the ownership check still leaves this incarnation's sets to remove
    try {
      ours = host.firewall().remove(uid, comment);
    } catch (IOException e) {
      log.warn("sandbox {}: cannot remove its egress rules: {}", sandboxId, e.getMessage());
    }
    if (ours) {
      try {
        // after the filter rules, which match the sets
        SandboxDns.remove(uid);
      } catch (IOException e) {
        log.warn("sandbox {}: cannot remove its DNS redirect and address sets: {}", sandboxId, e.getMessage());
      }
    }
  }
}
