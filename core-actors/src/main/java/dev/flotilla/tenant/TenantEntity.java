package dev.flotilla.tenant;

import dev.flotilla.cluster.LeastLoadedAllocation;
import dev.flotilla.cluster.ShardingSettings;
import dev.flotilla.persistence.FlotillaSerializable;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.javadsl.CommandHandlerWithReply;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehaviorWithEnforcedReplies;
import org.apache.pekko.persistence.typed.javadsl.ReplyEffect;
import org.apache.pekko.persistence.typed.javadsl.RetentionCriteria;

/**
 * One tenant's ledger: which sandboxes it owns and what they reserve. Quotas are checked here,
 * in one single-writer place, so two concurrent creates on two nodes cannot both slip past a
 * limit. Also the index behind listing a tenant's sandboxes.
 *
 * <p>A reservation is keyed by sandbox id and idempotent, so a retried create reserves once.
 */
public final class TenantEntity
    extends EventSourcedBehaviorWithEnforcedReplies<TenantEntity.Command, TenantEntity.Event, TenantEntity.State> {

  public static final EntityTypeKey<Command> ENTITY_KEY = EntityTypeKey.create(Command.class, "Tenant");

  /** Limits of one tenant; a value of 0 means unlimited. */
  public record Quota(int sandboxes, int vcpus, long memoryMiB) implements FlotillaSerializable {}

  /** What one sandbox holds of its tenant's quota, plus what listing needs without asking it. */
  public record Reservation(String sandboxId, int vcpus, int memoryMiB, Map<String, String> labels, Instant createdAt)
      implements FlotillaSerializable {
    public Reservation {
      labels = labels == null ? Map.of() : Map.copyOf(labels);
    }
  }

  public sealed interface Command extends FlotillaSerializable {}

  /** Replies true when the reservation is new, false when it was already held (a retry). */
  public record Reserve(Reservation reservation, ActorRef<StatusReply<Boolean>> replyTo) implements Command {}

  public record Release(String sandboxId, ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * Makes a held reservation what the sandbox that exists under its id reserves (its vCPUs,
   * memory and labels; a no-op when it already is, or when nothing is held). Two creates with one
   * request id and different specs race: the first to reserve may not be the one whose sandbox
   * the sandbox entity created.
   */
  public record Amend(Reservation reservation, ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /**
   * A live resize's charge: the held reservation of {@code sandboxId}, which must still be
   * {@code expectVcpus} and {@code expectMemoryMiB} (else FAILED_PRECONDITION: another resize got
   * there first), becomes {@code vcpus} and {@code memoryMiB}. Only what grows is checked against
   * the quota (RESOURCE_EXHAUSTED past it); giving back is always allowed.
   */
  public record Resize(String sandboxId, int expectVcpus, int expectMemoryMiB, int vcpus, int memoryMiB,
      ActorRef<StatusReply<Done>> replyTo) implements Command {}

  /** Reservations in sandbox-id order, starting after {@code afterId} (empty: from the start). */
  public record ListReservations(String afterId, int limit, ActorRef<Page> replyTo) implements Command {}

  /**
   * Whether the tenant holds a reservation for {@code sandboxId}: every sandbox it has (not yet
   * deleted) does. Lets the API answer NOT_FOUND for an id that does not exist without starting a
   * sandbox entity for it.
   */
  public record Holds(String sandboxId, ActorRef<Boolean> replyTo) implements Command {}

  public record Page(List<Reservation> reservations, boolean more) implements FlotillaSerializable {
    public Page {
      reservations = List.copyOf(reservations);
    }
  }

  public sealed interface Event extends FlotillaSerializable {}

  public record Reserved(Reservation reservation) implements Event {}

  public record Released(String sandboxId) implements Event {}

  public record State(TreeMap<String, Reservation> reservations) implements FlotillaSerializable {
    int vcpus() {
      return reservations.values().stream().mapToInt(Reservation::vcpus).sum();
    }

    long memoryMiB() {
      return reservations.values().stream().mapToLong(Reservation::memoryMiB).sum();
    }
  }

  public static void init(ActorSystem<?> system, QuotaResolver quotas) {
    // Least loaded, never rebalanced, and the down-removal margin applied by placement (see
    // FlotillaDowningProvider); a tenant has no VMs to re-attach to, so no wait for a restarted node.
    ClusterSharding.get(system).init(Entity.of(ENTITY_KEY, ctx -> create(ctx.getEntityId(), quotas.quotaFor(ctx.getEntityId())))
        .withSettings(ShardingSettings.of(system))
        .withAllocationStrategy(new LeastLoadedAllocation(Adapter.toClassic(system), Duration.ZERO, ENTITY_KEY.name())));
  }

  public static Behavior<Command> create(String tenant, Quota quota) {
    return new TenantEntity(tenant, quota);
  }

  /** Looks up a tenant's quota (from configuration). */
  @FunctionalInterface
  public interface QuotaResolver {
    Quota quotaFor(String tenant);
  }

  private final String tenant;
  private final Quota quota;

  private TenantEntity(String tenant, Quota quota) {
    super(PersistenceId.of(ENTITY_KEY.name(), tenant),
        // Journal down: retried at most 3 s apart, so creates are taken again soon after it is back.
        SupervisorStrategy.restartWithBackoff(java.time.Duration.ofMillis(200), java.time.Duration.ofSeconds(3), 0.2));
    this.tenant = tenant;
    this.quota = quota;
  }

  @Override
  public State emptyState() {
    return new State(new TreeMap<>());
  }

  @Override
  public RetentionCriteria retentionCriteria() {
    return RetentionCriteria.snapshotEvery(200, 2);
  }

  @Override
  public CommandHandlerWithReply<Command, Event, State> commandHandler() {
    return newCommandHandlerWithReplyBuilder()
        .forAnyState()
        .onCommand(Reserve.class, this::onReserve)
        .onCommand(Release.class, this::onRelease)
        .onCommand(Amend.class, this::onAmend)
        .onCommand(Resize.class, this::onResize)
        .onCommand(ListReservations.class, this::onList)
        .onCommand(Holds.class, (s, c) -> Effect().reply(c.replyTo(), s.reservations().containsKey(c.sandboxId())))
        .build();
  }

  private ReplyEffect<Event, State> onReserve(State s, Reserve c) {
    Reservation r = c.reservation();
    if (s.reservations().containsKey(r.sandboxId())) return Effect().reply(c.replyTo(), StatusReply.success(false));
    String refusal = refusal(s, r);
    if (refusal != null) return Effect().reply(c.replyTo(), StatusReply.error(refusal));
    return Effect().persist(new Reserved(r)).thenReply(c.replyTo(), ns -> StatusReply.success(true));
  }

  /** Why this reservation would exceed the quota, or null if it fits. */
  private String refusal(State s, Reservation r) {
    if (quota.sandboxes() > 0 && s.reservations().size() + 1 > quota.sandboxes()) {
      return "tenant '" + tenant + "' has " + s.reservations().size() + " of its " + quota.sandboxes()
          + " sandboxes; delete one or ask for a larger quota";
    }
    if (quota.vcpus() > 0 && s.vcpus() + r.vcpus() > quota.vcpus()) {
      return "tenant '" + tenant + "' would use " + (s.vcpus() + r.vcpus()) + " vCPUs, over its quota of "
          + quota.vcpus() + " (" + s.vcpus() + " in use)";
    }
    if (quota.memoryMiB() > 0 && s.memoryMiB() + r.memoryMiB() > quota.memoryMiB()) {
      return "tenant '" + tenant + "' would use " + (s.memoryMiB() + r.memoryMiB()) + " MiB of memory, over its quota of "
          + quota.memoryMiB() + " MiB (" + s.memoryMiB() + " MiB in use)";
    }
    return null;
  }

  private ReplyEffect<Event, State> onRelease(State s, Release c) {
    if (!s.reservations().containsKey(c.sandboxId())) return Effect().reply(c.replyTo(), StatusReply.ack());
    return Effect().persist(new Released(c.sandboxId())).thenReply(c.replyTo(), ns -> StatusReply.ack());
  }

  private ReplyEffect<Event, State> onAmend(State s, Amend c) {
    Reservation held = s.reservations().get(c.reservation().sandboxId());
    Reservation r = c.reservation();
    if (held == null || (held.vcpus() == r.vcpus() && held.memoryMiB() == r.memoryMiB() && held.labels().equals(r.labels()))) {
      return Effect().reply(c.replyTo(), StatusReply.ack());
    }
    Reservation amended = new Reservation(held.sandboxId(), r.vcpus(), r.memoryMiB(), r.labels(), held.createdAt());
    return Effect().persist(new Reserved(amended)).thenReply(c.replyTo(), ns -> StatusReply.ack());
  }

  private ReplyEffect<Event, State> onResize(State s, Resize c) {
    Reservation held = s.reservations().get(c.sandboxId());
    if (held == null) {
      return Effect().reply(c.replyTo(), StatusReply.error("NOT_FOUND: sandbox " + c.sandboxId() + " not found"));
    }
    if (held.vcpus() == c.vcpus() && held.memoryMiB() == c.memoryMiB()) return Effect().reply(c.replyTo(), StatusReply.ack());
    if (held.vcpus() != c.expectVcpus() || held.memoryMiB() != c.expectMemoryMiB()) {
      return Effect().reply(c.replyTo(), StatusReply.error("FAILED_PRECONDITION: sandbox " + c.sandboxId()
          + " was resized meanwhile (it holds " + held.vcpus() + " vCPUs and " + held.memoryMiB() + " MiB); try again"));
    }
    int moreVcpus = Math.max(0, c.vcpus() - held.vcpus());
    int moreMemory = Math.max(0, c.memoryMiB() - held.memoryMiB());
    if (quota.vcpus() > 0 && moreVcpus > 0 && s.vcpus() + moreVcpus > quota.vcpus()) {
      return Effect().reply(c.replyTo(), StatusReply.error("RESOURCE_EXHAUSTED: tenant '" + tenant + "' would use "
          + (s.vcpus() + moreVcpus) + " vCPUs, over its quota of " + quota.vcpus() + " (" + s.vcpus() + " in use)"));
    }
    if (quota.memoryMiB() > 0 && moreMemory > 0 && s.memoryMiB() + moreMemory > quota.memoryMiB()) {
      return Effect().reply(c.replyTo(), StatusReply.error("RESOURCE_EXHAUSTED: tenant '" + tenant + "' would use "
          + (s.memoryMiB() + moreMemory) + " MiB of memory, over its quota of " + quota.memoryMiB() + " MiB (" + s.memoryMiB() + " MiB in use)"));
    }
    Reservation resized = new Reservation(held.sandboxId(), c.vcpus(), c.memoryMiB(), held.labels(), held.createdAt());
    return Effect().persist(new Reserved(resized)).thenReply(c.replyTo(), ns -> StatusReply.ack());
  }

  private ReplyEffect<Event, State> onList(State s, ListReservations c) {
    var tail = c.afterId() == null || c.afterId().isEmpty() ? s.reservations() : s.reservations().tailMap(c.afterId(), false);
    List<Reservation> out = new ArrayList<>();
    for (Reservation r : tail.values()) {
      if (out.size() == c.limit()) break;
      out.add(r);
    }
    return Effect().reply(c.replyTo(), new Page(out, tail.size() > out.size()));
  }

  @Override
  public EventHandler<State, Event> eventHandler() {
    return newEventHandlerBuilder()
        .forAnyState()
        // Copy on write: the state may be serialized for a snapshot while the next event applies.
        .onEvent(Reserved.class, (s, e) -> {
          var m = new TreeMap<>(s.reservations());
          m.put(e.reservation().sandboxId(), e.reservation());
          return new State(m);
        })
        .onEvent(Released.class, (s, e) -> {
          var m = new TreeMap<>(s.reservations());
          m.remove(e.sandboxId());
          return new State(m);
        })
        .build();
  }
}
