package dev.flotilla.persistence.testdomain;

import dev.flotilla.persistence.FlotillaSerializable;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.javadsl.CommandHandler;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehavior;
import org.apache.pekko.persistence.typed.javadsl.RetentionCriteria;

/** A minimal event-sourced entity whose events and snapshots go through Kryo. */
public final class Counter extends EventSourcedBehavior<Counter.Command, Counter.Event, Counter.State> {

  public sealed interface Command {}

  public record Add(int amount, ActorRef<State> replyTo) implements Command {}

  public record Get(ActorRef<State> replyTo) implements Command {}

  public sealed interface Event extends FlotillaSerializable {}

  public record Added(int amount, Instant at) implements Event {}

  public record Reset(String reason) implements Event {}

  public record State(long total, List<Integer> recent) implements FlotillaSerializable {
    State add(int amount) {
      List<Integer> r = new ArrayList<>(recent);
      r.add(amount);
      return new State(total + amount, List.copyOf(r.subList(Math.max(0, r.size() - 5), r.size())));
    }
  }

  public static Behavior<Command> create(String id) {
    return new Counter(PersistenceId.of("Counter", id));
  }

  private Counter(PersistenceId id) {
    super(id);
  }

  @Override
  public State emptyState() {
    return new State(0, List.of());
  }

  @Override
  public RetentionCriteria retentionCriteria() {
    return RetentionCriteria.snapshotEvery(3, 2);
  }

  @Override
  public CommandHandler<Command, Event, State> commandHandler() {
    return newCommandHandlerBuilder()
        .forAnyState()
        .onCommand(Add.class, (s, c) -> Effect().persist(new Added(c.amount(), Instant.now())).thenReply(c.replyTo(), n -> n))
        .onCommand(Get.class, (s, c) -> Effect().reply(c.replyTo(), s))
        .build();
  }

  @Override
  public EventHandler<State, Event> eventHandler() {
    return newEventHandlerBuilder()
        .forAnyState()
        .onEvent(Added.class, (s, e) -> s.add(e.amount()))
        .onEvent(Reset.class, (s, e) -> emptyState())
        .build();
  }
}
