package dev.flotilla.persistence.kryo;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.io.Output;
import com.esotericsoftware.kryo.util.Pool;
import com.typesafe.config.Config;
import java.util.function.Supplier;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.objenesis.strategy.StdInstantiatorStrategy;

/**
 * Thread-safe Kryo encoder/decoder over pooled Kryo instances (Kryo itself is not thread-safe).
 *
 * <p>Bytes: one format byte ({@link #FORMAT_V1}), then Kryo's class id and object. Used by
 * {@code KryoSerializer}; usable directly (without an ActorSystem unless actor refs are involved)
 * by tests and tools such as the fixture generator.
 */
public final class KryoCodec {
  public static final byte FORMAT_V1 = 1;
  private static final int MAX_POOLED_BUFFER = 1 << 20;

  private final KryoRegistry registry;
  private final Supplier<ExtendedActorSystem> system;
  private final Pool<Kryo> kryos;
  private final Pool<Output> outputs;

  /**
   * @param config config holding {@code flotilla.serialization.kryo.classes}
   * @param system supplies the actor system for actor refs; may be null or supply null
   */
  public KryoCodec(Config config, ClassLoader classLoader, Supplier<ExtendedActorSystem> system) {
    this.registry = KryoRegistry.fromConfig(config, classLoader);
    this.system = system;
    int max = Math.max(4, Runtime.getRuntime().availableProcessors() * 4);
    this.kryos =
        new Pool<>(true, false, max) {
          @Override
          protected Kryo create() {
            return newKryo(classLoader);
          }
        };
    this.outputs =
        new Pool<>(true, false, max) {
          @Override
          protected Output create() {
            return new Output(256, -1);
          }
        };
    // Build one now so configuration mistakes surface when the serializer is created.
    kryos.free(kryos.obtain());
  }

  private Kryo newKryo(ClassLoader classLoader) {
    Kryo kryo = new FlotillaKryo();
    kryo.setClassLoader(classLoader);
    kryo.setInstantiatorStrategy(new com.esotericsoftware.kryo.util.DefaultInstantiatorStrategy(new StdInstantiatorStrategy()));
    Builtins.register(kryo, system);
    registry.applyTo(kryo);
    return kryo;
  }

  public KryoRegistry registry() {
    return registry;
  }

  public byte[] toBinary(Object value) {
    Kryo kryo = kryos.obtain();
    Output output = outputs.obtain();
    try {
      output.reset();
      output.writeByte(FORMAT_V1);
      kryo.writeClassAndObject(output, value);
      return output.toBytes();
    } finally {
      kryos.free(kryo);
      if (output.getBuffer().length <= MAX_POOLED_BUFFER) {
        outputs.free(output);
      }
    }
  }

  public Object fromBinary(byte[] bytes) {
    if (bytes.length == 0 || bytes[0] != FORMAT_V1) {
      throw new KryoException(
          "Not Flotilla Kryo bytes: expected format byte " + FORMAT_V1 + ", got "
              + (bytes.length == 0 ? "empty input" : String.valueOf(bytes[0])));
    }
    Kryo kryo = kryos.obtain();
    try {
      return kryo.readClassAndObject(new Input(bytes, 1, bytes.length - 1));
    } finally {
      kryos.free(kryo);
    }
  }
}
