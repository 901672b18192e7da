// The knexfile Stagecraft's `knex` engine hands to the project's own Knex CLI (`--knexfile`).
//
// It reads its settings from stdin and the database URL from one environment variable, never
// from the command line, so the URL never shows up in `ps`. It loads the project's knexfile (if
// any) for the chosen environment, refuses to run when that knexfile's migrations settings
// differ from what Stagecraft planned with (plan and run must read the same folders and table),
// writes a "started" row with each migration (dirty records), and reports what Knex does as
// `@@stagecraft {json}` lines on stdout, which the Python side parses.
'use strict';

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const MARKER = '@@stagecraft ';
const DEFAULTS = {
  tableName: 'knex_migrations',
  schemaName: null,
  directory: './migrations',
  loadExtensions: ['.co', '.coffee', '.eg', '.iced', '.js', '.cjs', '.litcoffee', '.ls', '.ts'],
  sortDirsSeparately: false,
};

function emit(event) {
  process.stdout.write(MARKER + JSON.stringify(event) + '\n');
}

function fail(event, message) {
  emit(event);
  throw new Error(message);
}

function projectFileImporter() {
  // Knex's own loader decides between require() and import() as the project's Knex would.
  try {
    return require(path.join(process.env.KNEX_PATH, 'lib/migrations/util/import-file'));
  } catch (error) {
    return (file) => import(pathToFileURL(file).href);
  }
}

async function loadProjectConfig(knexfile, environment) {
  let loaded = await projectFileImporter()(knexfile);
  if (loaded && loaded.default) loaded = loaded.default;
  if (typeof loaded === 'function') loaded = await loaded();
  const config = (loaded && loaded[environment]) || loaded;
  if (!config || typeof config !== 'object') {
    throw new Error(`${knexfile} has no configuration for environment "${environment}"`);
  }
  return { ...config };
}

function realDirectory(directory) {
  const absolute = path.resolve(process.cwd(), directory);
  try {
    return fs.realpathSync(absolute);
  } catch (error) {
    return absolute;
  }
}

function comparable(field, value) {
  if (field === 'directory') {
    return [].concat(value).map(realDirectory);
  }
  return value;
}

// The project's knexfile wins where it speaks; Stagecraft's plan must then have used the same
// value, or plan and run would disagree about what is pending.
function checkAgreement(projectMigrations, planned, knexfile) {
  if (projectMigrations.migrationSource) {
    fail({ event: 'mismatch', field: 'migrationSource', knexfile: 'custom', stagecraft: 'folders' },
      `${knexfile} sets migrations.migrationSource; Stagecraft reads migration folders only`);
  }
  for (const field of Object.keys(DEFAULTS)) {
    const own = projectMigrations[field] === undefined ? DEFAULTS[field] : projectMigrations[field];
    const project = JSON.stringify(comparable(field, own));
    const plan = JSON.stringify(comparable(field, planned[field]));
    if (project !== plan) {
      fail({ event: 'mismatch', field, knexfile: comparable(field, own),
        stagecraft: comparable(field, planned[field]) },
      `${knexfile} sets migrations.${field} = ${project} but Stagecraft planned with ${plan}`);
    }
  }
}

function reportingHooks(projectMigrations, settings) {
  const { beforeAll, beforeEach, afterEach } = projectMigrations;
  const startedAt = new Map();
  // Knex hands beforeAll its batch transaction when the whole batch runs in one; Knex then
  // writes its own rows in that transaction too, so they commit or roll back with the
  // migrations and a migration can never be applied without its row: no started rows needed.
  let inBatchTransaction = false;
  // A row in Stagecraft's "started" table, written with the migration: in its transaction when
  // it has one (so it commits with it), on its own when it has none. Knex records a migration
  // only after that, so a started row without Knex's record is a migration that may have been
  // applied in part or in full: Stagecraft's plan reports it as dirty.
  const markStarted = (knex, name) => {
    const table = knex(settings.startedTable);
    return (settings.schemaName ? table.withSchema(settings.schemaName) : table)
      .insert({ name, started_at: new Date() })
      .onConflict('name')
      .merge();
  };
  return {
    async beforeAll(knex, migrations) {
      inBatchTransaction = Boolean(knex.isTransaction);
      emit({ event: 'batch', transaction: inBatchTransaction });
      // Knex holds its lock now. Outside a batch transaction it does not look again at what is
      // recorded, so a plain Knex that ran between our listing and our lock would see its
      // migrations run twice: stop instead, and Stagecraft plans again.
      const recorded = settings.schemaName
        ? knex(settings.tableName).withSchema(settings.schemaName)
        : knex(settings.tableName);
      const done = await recorded.whereIn('name', migrations.map((m) => m.file)).pluck('name');
      if (done.length) {
        emit({ event: 'raced', names: done });
        throw new Error(`applied meanwhile by another runner: ${done.join(', ')}`);
      }
      // Query errors carry the database's code, detail and hint, which Knex's log drops.
      knex.client.on('query-error', (error, query) => {
        const text = String(error.message);
        const cut = text.lastIndexOf(' - ');
        emit({
          event: 'query-error',
          message: cut >= 0 ? text.slice(cut + 3) : text,
          code: error.code || null,
          detail: error.detail || null,
          hint: error.hint || null,
          statement: query && query.sql ? String(query.sql) : null,
        });
      });
      if (beforeAll) await beforeAll(knex, migrations);
    },
    async beforeEach(knex, migrations) {
      for (const migration of migrations) {
        if (!inBatchTransaction) await markStarted(knex, migration.file);
        startedAt.set(migration.file, process.hrtime.bigint());
        emit({ event: 'started', name: migration.file });
      }
      if (beforeEach) await beforeEach(knex, migrations);
    },
    async afterEach(knex, migrations) {
      if (afterEach) await afterEach(knex, migrations);
      for (const migration of migrations) {
        const elapsed = process.hrtime.bigint() - (startedAt.get(migration.file) || 0n);
        emit({ event: 'finished', name: migration.file, ms: Number(elapsed / 1000000n) });
      }
    },
  };
}

// Knex runs exactly the files Stagecraft planned with, in the planned order, and by default each
// migration in its own transaction: without a `config.transaction` of its own, a migration is
// given `transaction: true`, which Knex honours under `--disable-transactions` (that flag only
// drops the one transaction Knex would otherwise wrap around the whole batch).
class PlannedMigrations {
  constructor(listing, singleTransaction) {
    this.listing = listing;
    this.singleTransaction = singleTransaction;
    this.importFile = projectFileImporter();
  }

  getMigrations() {
    return Promise.resolve(this.listing.map(([directory, file]) => ({ directory, file })));
  }

  getMigrationName(migration) {
    return migration.file;
  }

  async getMigration(migration) {
    const loaded = await this.importFile(path.join(migration.directory, migration.file));
    const own = loaded && loaded.config && typeof loaded.config.transaction === 'boolean';
    if (this.singleTransaction || own) return loaded;
    return { ...loaded, config: { ...((loaded && loaded.config) || {}), transaction: true } };
  }
}

// A disagreement here is a bug in Stagecraft's reading of Knex's rules: stop before running.
async function checkListing(settings) {
  let FsMigrations;
  try {
    ({ FsMigrations } = require(
      path.join(process.env.KNEX_PATH, 'lib/migrations/migrate/sources/fs-migrations')));
  } catch (error) {
    return; // an older Knex keeps its lister elsewhere; the plan's listing stands
  }
  const knexOwn = await new FsMigrations(
    settings.directories, settings.sortDirsSeparately, settings.loadExtensions).getMigrations();
  const theirs = knexOwn.map((migration) => migration.file);
  const mine = settings.listing.map(([, file]) => file);
  if (JSON.stringify(theirs) !== JSON.stringify(mine)) {
    const at = theirs.findIndex((name, index) => name !== mine[index]);
    fail({ event: 'listing-mismatch', index: at, knex: theirs[at] ?? null, stagecraft: mine[at] ?? null },
      `Knex lists the migrations differently from Stagecraft's plan at position ${at}`);
  }
}

const FS_OPTIONS = ['directory', 'sortDirsSeparately', 'loadExtensions', 'migrationSource'];

// Knex's CLI reports a failing knexfile as "Failed to read config from knexfile" alone: say why.
module.exports = async function stagecraftKnexConfigOrWhyNot() {
  try {
    return await stagecraftKnexConfig();
  } catch (error) {
    emit({ event: 'config-error', message: String((error && error.message) || error) });
    throw error;
  }
};

async function stagecraftKnexConfig() {
  const settings = JSON.parse(fs.readFileSync(0, 'utf8'));
  // Knex resolves relative paths against the working directory: make it the project's.
  process.chdir(settings.projectRoot);
  const environment = settings.environment || process.env.NODE_ENV || 'development';
  const config = settings.knexfile ? await loadProjectConfig(settings.knexfile, environment) : {};
  const projectMigrations = { ...(config.migrations || {}) };
  const planned = {
    tableName: settings.tableName,
    schemaName: settings.schemaName,
    directory: settings.directories,
    loadExtensions: settings.loadExtensions,
    sortDirsSeparately: settings.sortDirsSeparately,
  };
  if (settings.knexfile) checkAgreement(projectMigrations, planned, settings.knexfile);
  await checkListing(settings);
  if (!config.client) config.client = settings.client;
  if (config.connection == null) config.connection = process.env[settings.urlEnv];
  config.log = {
    ...(config.log || {}),
    warn(message) {
      emit({ event: 'warn', message: String(message) });
    },
  };
  for (const option of FS_OPTIONS) delete projectMigrations[option];
  config.migrations = {
    ...projectMigrations,
    tableName: settings.tableName,
    schemaName: settings.schemaName,
    migrationSource: new PlannedMigrations(settings.listing, settings.singleTransaction),
    disableMigrationsListValidation:
      Boolean(projectMigrations.disableMigrationsListValidation) || settings.allowMissing,
    ...reportingHooks(projectMigrations, settings),
  };
  emit({ event: 'config', environment, knexfile: settings.knexfile });
  return config;
}
