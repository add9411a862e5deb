package recspark.jvm;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.instrument.ClassFileTransformer;
import java.lang.instrument.Instrumentation;
import java.lang.reflect.Field;
import java.security.ProtectionDomain;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.xbean.asm9.Attribute;
import org.apache.xbean.asm9.ClassReader;
import org.apache.xbean.asm9.ClassVisitor;
import org.apache.xbean.asm9.ClassWriter;
import org.apache.xbean.asm9.MethodVisitor;
import org.apache.xbean.asm9.Opcodes;

/**
 * Java agent: Spark's ClosureCleaner parses a class file once per class, not once per closure.
 *
 * <p>Before every RDD operation and job, {@code ClosureCleaner.clean} reads the class that
 * declared the closure (RDD, SparkContext, PairRDDFunctions...) from its jar and parses all of it
 * with ASM to reject {@code return} statements in the closure's method. Nothing is cached, so on
 * small data this is most of a job's driver time (18% of the JVM's CPU over recspark's unit
 * tests; a 10-row count spends 57% of its time there). The agent rewrites
 * {@code ClosureCleaner$.getClassReader} to return one reader per class whose {@code accept}
 * skips a ReturnStatementFinder pass over a method that already passed one. Class bytes do not
 * change while a JVM runs, so every check Spark makes still has the same outcome; a closure with
 * a return statement still fails, every time. Any other visitor parses the class as before.
 */
public final class ClosureCleanerCache {
    private static final String CLEANER = "org/apache/spark/util/ClosureCleaner$";
    private static final String READER_DESC = "(Ljava/lang/Class;)Lorg/apache/xbean/asm9/ClassReader;";
    private static final String RETURN_FINDER = "org.apache.spark.util.ReturnStatementFinder";

    private static final ClassValue<Optional<ClassReader>> READERS = new ClassValue<Optional<ClassReader>>() {
        @Override
        protected Optional<ClassReader> computeValue(Class<?> type) {
            return Optional.ofNullable(readClass(type));
        }
    };

    private ClosureCleanerCache() {
    }

    public static void premain(String args, Instrumentation instrumentation) {
        instrumentation.addTransformer(new CleanerTransformer());
    }

    /** The replacement body of {@code ClosureCleaner$.getClassReader}: null when Spark's is. */
    public static ClassReader classReader(Class<?> type) {
        return READERS.get(type).orElse(null);
    }

    private static ClassReader readClass(Class<?> type) {
        String name = type.getName();
        try (InputStream in = type.getResourceAsStream(name.substring(name.lastIndexOf('.') + 1) + ".class")) {
            if (in == null) {
                return null;
            }
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            byte[] buffer = new byte[8192];
            for (int n; (n = in.read(buffer)) > 0; ) {
                bytes.write(buffer, 0, n);
            }
            return new CheckedOnceReader(bytes.toByteArray());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A class reader that remembers which methods passed Spark's return-statement check. */
    static final class CheckedOnceReader extends ClassReader {
        private static final Field TARGET_METHOD = targetMethodField();
        private final Set<String> passed = ConcurrentHashMap.newKeySet();

        CheckedOnceReader(byte[] classFile) {
            super(classFile);
        }

        @Override
        public void accept(ClassVisitor visitor, Attribute[] attributePrototypes, int parsingOptions) {
            String method = TARGET_METHOD == null ? null : returnCheckTarget(visitor);
            if (method == null) {
                super.accept(visitor, attributePrototypes, parsingOptions);
                return;
            }
            if (passed.contains(method)) {
                return;
            }
            super.accept(visitor, attributePrototypes, parsingOptions);  // throws on a return statement
            passed.add(method);
        }

        private static String returnCheckTarget(ClassVisitor visitor) {
            if (!visitor.getClass().getName().equals(RETURN_FINDER)) {
                return null;
            }
            try {
                return String.valueOf(TARGET_METHOD.get(visitor));
            } catch (IllegalAccessException e) {
                return null;
            }
        }

        private static Field targetMethodField() {
            try {
                Field field = Class.forName(RETURN_FINDER).getDeclaredField("targetMethodName");
                field.setAccessible(true);
                return field;
            } catch (ReflectiveOperationException | RuntimeException e) {
                return null;  // another Spark version: readers are still shared, every check runs
            }
        }
    }

    /** Replaces the body of {@code ClosureCleaner$.getClassReader} by a call to {@link #classReader}. */
    static final class CleanerTransformer implements ClassFileTransformer {
        @Override
        public byte[] transform(ClassLoader loader, String className, Class<?> redefined,
                                ProtectionDomain domain, byte[] classFile) {
            if (!CLEANER.equals(className)) {
                return null;
            }
            try {
                ClassReader reader = new ClassReader(classFile);
                ClassWriter writer = new ClassWriter(reader, 0);
                boolean[] replaced = {false};
                reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
                    @Override
                    public MethodVisitor visitMethod(int access, String name, String descriptor, String signature,
                                                     String[] exceptions) {
                        MethodVisitor method = super.visitMethod(access, name, descriptor, signature, exceptions);
                        if (!name.equals("getClassReader") || !descriptor.equals(READER_DESC)) {
                            return method;
                        }
                        method.visitCode();
                        method.visitVarInsn(Opcodes.ALOAD, 1);
                        method.visitMethodInsn(Opcodes.INVOKESTATIC, "recspark/jvm/ClosureCleanerCache", "classReader",
                                               READER_DESC, false);
                        method.visitInsn(Opcodes.ARETURN);
                        method.visitMaxs(1, 2);
                        method.visitEnd();
                        replaced[0] = true;
                        return null;  // the original body is dropped
                    }
                }, 0);
                return replaced[0] ? writer.toByteArray() : null;
            } catch (RuntimeException e) {
                System.err.println("recspark closure-cleaner cache not installed: " + e);
                return null;
            }
        }
    }
}
