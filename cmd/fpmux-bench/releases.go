// This file owns the PHP the bench serves, written at run time into the
// temp dir: the hello page every release has, the light APCu page, and a
// framework-like app of about 300 files (an autoloader, a chain of
// bootstrap files, interfaces, traits and classes) whose index loads them
// all.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const helloPHP = "<?php echo \"hello\\n\";\n"

// The APCu page answers apcuLine apcuRepeat times (1015 bytes), read from
// APCu, which the pool's first request fills: a light page as an app that
// caches its rendered fragments serves them. Without APCu it answers 500,
// so the bench's page check fails rather than measuring something else.
const (
	apcuLine   = "fpmux-bench light page, from APCu.\n"
	apcuRepeat = 29
)

var apcuPHP = fmt.Sprintf(`<?php
if (!function_exists('apcu_enabled') || !apcu_enabled()) {
    http_response_code(500);
    exit("APCu is not enabled in this pool\n");
}
$page = apcu_fetch('fpmux-bench-light', $hit);
if (!$hit) {
    $page = str_repeat(%q, %d);
    apcu_store('fpmux-bench-light', $page);
}
echo $page;
`, apcuLine, apcuRepeat)

// Sizes of the framework app: 2 + chainFiles + contracts + concerns + models
// files in all.
const (
	chainFiles = 10
	contracts  = 20
	concerns   = 20
	models     = 250
)

// mkdir makes dir (and its parents) readable by php-fpm's www-data
// children whatever the umask.
func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod dir %s: %w", dir, err)
	}
	return nil
}

// writeFile writes a file readable by everyone whatever the umask.
func writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// writeHelloRelease writes a release holding only hello.php.
func writeHelloRelease(root string) error {
	if err := mkdir(root); err != nil {
		return err
	}
	return writeFile(filepath.Join(root, "hello.php"), helloPHP)
}

// writeFramework writes the framework-like app under dir and returns how
// many PHP files it wrote.
func writeFramework(dir string) (int, error) {
	files := map[string]string{
		"index.php":           frameworkIndex,
		"vendor/autoload.php": frameworkAutoload,
	}
	for i := range chainFiles {
		files[fmt.Sprintf("bootstrap/chain%02d.php", i)] = chainFile(i)
	}
	for i := range contracts {
		files[fmt.Sprintf("src/Contracts/Contract%02d.php", i)] = contractFile(i)
	}
	for i := range concerns {
		files[fmt.Sprintf("src/Concerns/Concern%02d.php", i)] = concernFile(i)
	}
	for i := range models {
		files[fmt.Sprintf("src/Models/Model%03d.php", i)] = modelFile(i)
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := mkdir(filepath.Dir(path)); err != nil {
			return 0, err
		}
		if err := writeFile(path, content); err != nil {
			return 0, err
		}
	}
	return len(files), nil
}

const frameworkIndex = `<?php
declare(strict_types=1);

$config = require __DIR__ . '/bootstrap/chain00.php';

$rows = [];
$total = 0;
foreach ($config['models'] as $i => $class) {
    $model = new $class(['seq' => $i]);
    $total += $model->score($i);
    if ($i % 6 === 0) {
        $rows[] = $model->render();
    }
}

header('Content-Type: text/html; charset=utf-8');
echo "<!doctype html>\n<html><head><title>", htmlspecialchars($config['app']['name']), "</title></head>\n<body>\n";
echo '<h1>', htmlspecialchars($config['app']['name']), ' ', htmlspecialchars($config['app']['version']), "</h1>\n";
echo "<table>\n", implode("\n", $rows), "\n</table>\n";
echo '<p>', count($config['models']), ' models, total ', $total, "</p>\n</body></html>\n";
`

const frameworkAutoload = `<?php
declare(strict_types=1);

// PSR-4 style: App\X\Y lives in src/X/Y.php.
spl_autoload_register(static function (string $class): void {
    $prefix = 'App\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    require __DIR__ . '/../src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
});
`

// chainFile is one link of the bootstrap chain: chain00 loads the
// autoloader, each link requires the next and adds its part of the config,
// and the last one lists the model classes.
func chainFile(i int) string {
	var b strings.Builder
	b.WriteString("<?php\ndeclare(strict_types=1);\n\n")
	if i == 0 {
		b.WriteString("require_once __DIR__ . '/../vendor/autoload.php';\n\n")
	}
	if i < chainFiles-1 {
		fmt.Fprintf(&b, "$config = require __DIR__ . '/chain%02d.php';\n", i+1)
	} else {
		b.WriteString("$config = ['models' => []];\n")
		fmt.Fprintf(&b, "for ($i = 0; $i < %d; $i++) {\n    $config['models'][] = sprintf('App\\\\Models\\\\Model%%03d', $i);\n}\n", models)
	}
	if i == 0 {
		b.WriteString("$config['app'] = ['name' => 'fpmux bench app', 'version' => '1.0.0'];\n")
	}
	fmt.Fprintf(&b, "$config['section%02d'] = ['enabled' => true, 'level' => %d, 'tags' => ['a%d', 'b%d']];\n", i, i, i, i)
	b.WriteString("\nreturn $config;\n")
	return b.String()
}

func contractFile(i int) string {
	return fmt.Sprintf(`<?php
declare(strict_types=1);

namespace App\Contracts;

interface Contract%02d
{
    public function id(): int;

    public function name(): string;

    public function score(int $x): int;

    public function render(): string;
}
`, i)
}

func concernFile(i int) string {
	return fmt.Sprintf(`<?php
declare(strict_types=1);

namespace App\Concerns;

trait Concern%02d
{
    public function describe(): string
    {
        return substr(strrchr(static::class, '\\'), 1) . '/c%02d';
    }

    public function tags(): array
    {
        return ['concern%02d', $this->name()];
    }
}
`, i, i, i)
}

// modelFile is class i: every tenth class is a base that implements a
// contract and uses a trait; the nine after it extend it.
func modelFile(i int) string {
	if i%10 == 0 {
		return fmt.Sprintf(`<?php
declare(strict_types=1);

namespace App\Models;

use App\Concerns\Concern%02[2]d;
use App\Contracts\Contract%02[3]d;

class Model%03[1]d implements Contract%02[3]d
{
    use Concern%02[2]d;

    protected array $attributes;

    public function __construct(array $attributes = [])
    {
        $this->attributes = $attributes + ['id' => %[1]d, 'name' => 'model-%[1]d'];
    }

    public function id(): int
    {
        return (int) $this->attributes['id'];
    }

    public function name(): string
    {
        return (string) $this->attributes['name'];
    }

    public function score(int $x): int
    {
        $s = 0;
        for ($i = 0; $i < 8; $i++) {
            $s += ($x * 31 + $i * %[1]d) %% 97;
        }
        return $s;
    }

    public function render(): string
    {
        return '<tr><td>' . $this->id() . '</td><td>' . htmlspecialchars($this->name()) . '</td><td>'
            . $this->score(7) . '</td><td>' . htmlspecialchars($this->describe()) . '</td><td>'
            . htmlspecialchars(implode(', ', $this->tags())) . '</td></tr>';
    }
}
`, i, (i/10)%concerns, (i/10)%contracts)
	}
	return fmt.Sprintf(`<?php
declare(strict_types=1);

namespace App\Models;

final class Model%03[1]d extends Model%03[2]d
{
    public function __construct(array $attributes = [])
    {
        parent::__construct($attributes + ['id' => %[1]d, 'name' => 'model-%[1]d']);
    }

    public function score(int $x): int
    {
        return parent::score($x) + %[1]d %% 7;
    }
}
`, i, i-i%10)
}
