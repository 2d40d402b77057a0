// A stand-in for the part of aws-sdk v2 that seed 001 uses: DynamoDB.DocumentClient's put, delete and scan, each
// returning { promise() }, over one in-memory table per TableName shared by every client in the process.
const tables = new Map();

const table = (name) => {
  if (!tables.has(name)) tables.set(name, new Map());
  return tables.get(name);
};

const done = (value) => ({ promise: async () => value });

class DocumentClient {
  put({ TableName, Item }) {
    table(TableName).set(Item.token, { ...Item });
    return done({});
  }

  delete({ TableName, Key }) {
    table(TableName).delete(Key.token);
    return done({});
  }

  scan({ TableName }) {
    const Items = [...table(TableName).values()].map((item) => ({ ...item }));
    return done({ Items, Count: Items.length });
  }
}

export default { DynamoDB: { DocumentClient } };
